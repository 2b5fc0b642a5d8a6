/*
 * nudgel/version.h — the version every binary reports (--version).
 *
 * The build computes it (cmake/version.cmake): the project version, plus
 * "+<git describe --always --dirty>" when built from a git checkout.
 */
#ifndef NUDGEL_VERSION_H
#define NUDGEL_VERSION_H

/** @brief The version string, e.g. "0.1.0+f07e2cc-dirty". Static, never NULL. */
const char *nudgel_version(void);

#endif
