def is_zero(x):
    if x == 0:
        return True
    return False
