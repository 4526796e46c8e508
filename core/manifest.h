/*  Module manifests: Selena's manifest.json, validated exactly per
    shared/spec/selena-protocol.md, normalised into one structure. */
#ifndef MC_MANIFEST_H
#define MC_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char *name;           // ^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$
    char *version;        // ^\d+\.\d+\.\d+$
    char *type;           // SYSTEM, UI, INTEGRATION, DRIVER, AUTOMATION, IMPORT_SOURCE
    char *api_version;    // as given, e.g. "1.0"
    char *ui_profile;     // HEADLESS, SETTINGS_ONLY, ICON_SETTINGS, FULL, or NULL
    char *runtime_mode;   // always_on (default), on_demand, scheduled
    char *description;    // optional, may be NULL
    char *author;         // optional, may be NULL
    int port;             // 8100..8200; 0 for SYSTEM modules (which have none)
    uint32_t permissions; // bit set of mc_perm_t
    char **entry;         // argv to start the module, NULL-terminated, never empty after load
    char **test;          // optional argv of the sandbox test command, NULL-terminated, or NULL
    int memory_mb;        // resources.memory_mb, 0 when not given
    double cpu;           // resources.cpu, 0 when not given
    char *network;        // "loopback" (default) or "none": its own network namespace
    char *schedule;       // cron line for runtime_mode "scheduled", else NULL
    json_t *json;         // the whole manifest as parsed (owned)
} mc_manifest_t;

//  Parses and validates manifest JSON text. On success returns the manifest and
//  *problems_p is NULL. On failure returns NULL and *problems_p is a JSON array of
//  strings, one per problem found ("port: must be an integer in 8100..8200"), listing
//  every problem, not just the first. Duplicate keys are a problem.
mc_manifest_t *mc_manifest_parse (const char *text, size_t len, json_t **problems_p);

//  Reads <dir>/manifest.json and parses it as above. When the manifest has no
//  "entry" and <dir>/main.py exists, applies Selena's uvicorn fallback:
//  ["python3", "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", "<port>"].
//  No entry and no fallback is a problem.
mc_manifest_t *mc_manifest_load_dir (const char *dir, json_t **problems_p);

//  Frees the manifest and sets *self_p to NULL; safe on NULL.
void mc_manifest_destroy (mc_manifest_t **self_p);

#endif
