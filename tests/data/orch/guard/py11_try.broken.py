try:
    v = int("x")
print(v)
