#include "core/perms.h"

#include <string.h>

static const struct {
    uint32_t bit;
    const char *name;
} s_perms[] = {
    {MC_PERM_DEVICE_READ, "device.read"},
    {MC_PERM_DEVICE_WRITE, "device.write"},
    {MC_PERM_EVENTS_SUBSCRIBE, "events.subscribe"},
    {MC_PERM_EVENTS_PUBLISH, "events.publish"},
    {MC_PERM_SECRETS_OAUTH, "secrets.oauth"},
    {MC_PERM_SECRETS_PROXY, "secrets.proxy"},
    {MC_PERM_STORAGE_RW, "storage.rw"},
    {MC_PERM_MODULES_MANAGE, "modules.manage"},
};

uint32_t mc_perm_from_name (const char *name)
{
    for (size_t i = 0; name && i < sizeof s_perms / sizeof s_perms[0]; i++)
        if (strcmp (s_perms[i].name, name) == 0)
            return s_perms[i].bit;
    return 0;
}

const char *mc_perm_name (uint32_t bit)
{
    for (size_t i = 0; i < sizeof s_perms / sizeof s_perms[0]; i++)
        if (s_perms[i].bit == bit)
            return s_perms[i].name;
    return NULL;
}

bool mc_perm_grantable (uint32_t bit)
{
    return bit != 0 && bit != MC_PERM_MODULES_MANAGE && mc_perm_name (bit) != NULL;
}
