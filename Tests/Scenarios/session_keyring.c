/*
 * session_keyring: a process that uses its session keyring. After a restore it must not find
 * a key it never had: the test gives the restorer's own session keyring a key
 * "amber-restorer-secret", which a restored process of another user must not possess.
 */
#include "scenario.h"

#define KEYCTL_SEARCH 10
#define KEY_SPEC_SESSION_KEYRING -3

int main(int argc, char **argv)
{
    sc_init(argc, argv, "session_keyring");
    sc_install_sigterm(0);
    sc_ready();
    sc_wait_for_term();
    sc_check_common();
    long found = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", "amber-restorer-secret", 0L);
    sc_check(found < 0, "it possesses the restorer's key %ld through its session keyring", found);
    sc_finish();
}
