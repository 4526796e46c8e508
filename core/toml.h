/*  TOML, read with toml++ through this one small C++ file and handed to C as a jansson
    object, so config files and module.toml manifests share the JSON code paths.
    Tables become objects, arrays arrays, integers integers, floats reals, booleans
    booleans, strings strings; dates and times become their ISO-8601 strings. */
#ifndef MC_TOML_H
#define MC_TOML_H

#include <jansson.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Parses TOML text. Returns a new JSON object, or NULL with a message (with line and
//  column) in err.
json_t *mc_toml_parse (const char *text, size_t len, char *err, size_t err_size);

//  Reads and parses a TOML file (at most 1 MiB).
json_t *mc_toml_parse_file (const char *path, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif
