#ifndef KAL_SHIM_H
#define KAL_SHIM_H

/* What Swift cannot import: one header per concern, each beside its .c file of one-line wrappers
 * (and the few system-call sequences that cannot run in Swift: between fork and exec, in a forked
 * child of a threaded process, on a borrowed stack). The module is the include directory; this
 * header includes every part for C code that wants them all. struct kal_tcp_info comes from
 * CKeepaliveTCPInfo (through kal_sock_diag.h), shared with the lean peer. */

#include "kal_clocks.h"
#include "kal_files.h"
#include "kal_namespaces.h"
#include "kal_netlink.h"
#include "kal_process.h"
#include "kal_sock_diag.h"
#include "kal_spawn.h"
#include "kal_uml.h"
#include "kal_userns.h"

#endif
