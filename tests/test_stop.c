/* Stop strings: earliest match across all stop strings, held-back partial matches. */
#include "sample/stop.h"
#include "t.h"

static void test_stop_scan(void) {
    const char *stops[] = {"END", "b", ""};
    size_t safe;
    const char *t = "xaby";
    T_EQ_INT(smp_stop_scan(stops, 2, t, strlen(t), 0, &safe), 2);
    const char *late[] = {"y", "a"}; /* the earliest match wins, whatever the order of the list */
    T_EQ_INT(smp_stop_scan(late, 2, t, strlen(t), 0, &safe), 1);
    T_EQ_INT(smp_stop_scan(stops, 3, "hello EN", 8, 0, &safe), -1);
    T_EQ_INT(safe, 6); /* "EN" may become "END" */
    T_EQ_INT(smp_stop_scan(stops, 3, "hello E", 7, 0, &safe), -1);
    T_EQ_INT(safe, 6);
    T_EQ_INT(smp_stop_scan(stops, 3, "hello", 5, 0, &safe), -1);
    T_EQ_INT(safe, 5);
    T_EQ_INT(smp_stop_scan(stops, 3, "xxENDyy", 7, 3, &safe), -1); /* starts before `from` */
    T_EQ_INT(smp_stop_scan(stops, 3, "xxENDyy", 7, 2, &safe), 2);
    T_EQ_INT(smp_stop_scan(stops, 0, "abc", 3, 0, &safe), -1);
    T_EQ_INT(safe, 3);
    T_EQ_INT(smp_stop_scan(stops + 2, 1, "abc", 3, 0, &safe), -1); /* empty stop ignored */
    T_EQ_INT(smp_stop_scan(stops, 1, "", 0, 0, &safe), -1);
    T_EQ_INT(safe, 0);
}

int main(void) {
    T_RUN(test_stop_scan);
    return t_done();
}
