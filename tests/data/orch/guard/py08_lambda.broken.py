square = lambda x: return x * x
