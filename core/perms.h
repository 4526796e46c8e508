/*  The permission catalogue: Selena's six permissions plus modcore's own.
    A principal's permissions are a bit set; names are what manifests and APIs use. */
#ifndef MC_PERMS_H
#define MC_PERMS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    MC_PERM_DEVICE_READ = 1u << 0,      // "device.read"
    MC_PERM_DEVICE_WRITE = 1u << 1,     // "device.write"
    MC_PERM_EVENTS_SUBSCRIBE = 1u << 2, // "events.subscribe"
    MC_PERM_EVENTS_PUBLISH = 1u << 3,   // "events.publish"
    MC_PERM_SECRETS_OAUTH = 1u << 4,    // "secrets.oauth" (INTEGRATION modules only)
    MC_PERM_SECRETS_PROXY = 1u << 5,    // "secrets.proxy" (INTEGRATION modules only)
    MC_PERM_STORAGE_RW = 1u << 6,       // "storage.rw" (modcore: per-module storage)
    MC_PERM_MODULES_MANAGE = 1u << 7,   // implied for SYSTEM modules and the admin token only
} mc_perm_t;

#define MC_PERM_ALL 0xffu

//  Returns the bit for a permission name, or 0 if the name is not in the catalogue.
//  "modules.manage" is not grantable by a manifest; it is returned here so APIs can name it.
uint32_t mc_perm_from_name (const char *name);

//  Returns the name of a single permission bit, or NULL.
const char *mc_perm_name (uint32_t bit);

//  True if a manifest may request this permission (the catalogue minus modules.manage).
bool mc_perm_grantable (uint32_t bit);

#endif
