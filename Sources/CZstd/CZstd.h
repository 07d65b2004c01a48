// Debian's libzstd (libzstd-dev), linked: --compress stores page files as zstd frames.
#include <zstd.h>
