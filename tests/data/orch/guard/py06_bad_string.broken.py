msg = "it's broken
print(msg)
