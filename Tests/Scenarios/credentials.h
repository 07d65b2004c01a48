/*
 * credentials.h: what the credentials scenarios read back about a thread.
 */
#ifndef AMBER_SCENARIO_CREDENTIALS_H
#define AMBER_SCENARIO_CREDENTIALS_H

#include "scenario.h"
#include <linux/capability.h>

/* The lines of a status file (/proc/self/status, /proc/thread-self/status) that hold credentials, "|"-joined. */
SC_FN void credential_lines(const char *path, char *out, size_t size)
{
    static const char *keys[] = {"Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:", "NoNewPrivs:"};
    char text[8192];
    ssize_t n = sc_read_file(path, text, sizeof text - 1);
    out[0] = 0;
    if (n <= 0)
        return;
    text[n] = 0;
    size_t len = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (strncmp(line, keys[k], strlen(keys[k])) == 0 && len < size)
                len += (size_t)snprintf(out + len, size - len, "%s|", line);
}

/* The calling thread's capability sets (capget with pid 0). */
SC_FN int capabilities(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) < 0)
        return -1;
    *effective = data[0].effective | (uint64_t)data[1].effective << 32;
    *permitted = data[0].permitted | (uint64_t)data[1].permitted << 32;
    *inheritable = data[0].inheritable | (uint64_t)data[1].inheritable << 32;
    return 0;
}

#endif
