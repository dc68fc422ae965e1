msg = "it's fixed"
print(msg)
