struct point { int x, y; };
int norm1(struct point p) {
    struct point *q = p;
    return q->x + q->y;
}
