// zlib (always present on Linux; headers from zlib1g-dev): inflates /proc/config.gz for CONFIG_HZ.
#include <zlib.h>
