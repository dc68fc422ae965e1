try:
    v = int("x")
except ValueError:
    v = 0
print(v)
