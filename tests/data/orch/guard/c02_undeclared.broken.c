int sum(const int *a, int n) {
    for (int i = 0; i < n; i++) total += a[i];
    return total;
}
