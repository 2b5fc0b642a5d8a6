/*
 * version.c — see nudgel/version.h. The string comes from the header the
 * build generates on every build (cmake/version.cmake); only this file
 * recompiles when it changes.
 */
#include "nudgel/version.h"

#include "nudgel_version_gen.h"

const char *nudgel_version(void)
{
    return NUDGEL_VERSION_STRING;
}
