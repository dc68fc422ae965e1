void reset(int *p) {
    *p = 0;
}
