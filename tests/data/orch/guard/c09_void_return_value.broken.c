void reset(int *p) {
    *p = 0;
    return *p;
}
