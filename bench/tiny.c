/* bench target (a): a tiny process that just sleeps in a loop. */
#include <time.h>
int main(void) {
    struct timespec t = {0, 50 * 1000 * 1000};
    for (;;) nanosleep(&t, 0);
}
