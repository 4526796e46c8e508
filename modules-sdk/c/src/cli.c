/*  CLI commands: the spec a module registers (POST /cli/spec), and the output buffers
    a subcommand's handler writes to. */
#include <ctype.h>

#include "internal.h"

#define MAX_OUTPUT (1u << 20) // what the core accepts from a module, in all

struct _mc_output_t {
    char *data;      // text so far, NUL-terminated
    size_t size;     // bytes of text
    size_t capacity; // allocated
    bool truncated;  // more than MAX_OUTPUT was written
};

mc_output_t *mc_output_new (void)
{
    mc_output_t *self = calloc (1, sizeof *self);
    assert (self);
    self->capacity = 256;
    self->data = malloc (self->capacity);
    assert (self->data);
    self->data[0] = 0;
    return self;
}

char *mc_output_finish (mc_output_t **self_p)
{
    assert (self_p && *self_p);
    mc_output_t *self = *self_p;
    char *text = self->data;
    free (self);
    *self_p = NULL;
    return text;
}

void mc_output_write (mc_output_t *self, const char *data, size_t size)
{
    assert (self);
    if (self->truncated || size == 0)
        return;
    if (self->size + size > MAX_OUTPUT) {
        size = MAX_OUTPUT - self->size;
        self->truncated = true;
    }
    if (self->size + size + 1 > self->capacity) {
        while (self->size + size + 1 > self->capacity)
            self->capacity *= 2;
        self->data = realloc (self->data, self->capacity);
        assert (self->data);
    }
    memcpy (self->data + self->size, data, size);
    self->size += size;
    self->data[self->size] = 0;
}

void mc_output_printf (mc_output_t *self, const char *format, ...)
{
    assert (self && format);
    va_list args;
    va_start (args, format);
    char *text = NULL;
    int n = vasprintf (&text, format, args);
    va_end (args);
    assert (n >= 0);
    mc_output_write (self, text, (size_t)n);
    free (text);
}

//  True if s is 1..32 characters of [a-z0-9_-] (what the core accepts as a CLI name).
static bool s_cli_name (const char *s)
{
    size_t len = s ? strlen (s) : 0;
    if (len == 0 || len > 32)
        return false;
    for (; *s; s++)
        if (!(islower ((unsigned char)*s) || isdigit ((unsigned char)*s) || *s == '-' || *s == '_'))
            return false;
    return true;
}

json_t *mc_cli_subcommand_spec (const char *name, const char *about, const mc_cli_arg_t *args)
{
    if (!s_cli_name (name)) {
        mc_sdk_log ("cli: '%s' is not a valid subcommand name (1..32 of a-z 0-9 _ -)",
                    name ? name : "(null)");
        return NULL;
    }
    json_t *list = json_array ();
    for (const mc_cli_arg_t *arg = args; arg && arg->name; arg++) {
        if (!s_cli_name (arg->name) || (arg->long_name && !s_cli_name (arg->long_name)) ||
            (arg->short_name && !isalnum ((unsigned char)arg->short_name))) {
            mc_sdk_log ("cli: subcommand %s: argument '%s' has an invalid name", name, arg->name);
            json_decref (list);
            return NULL;
        }
        json_t *spec = json_pack ("{s:s, s:b, s:b}", "name", arg->name, "required", arg->required,
                                  "takes_value", arg->takes_value);
        if (arg->long_name)
            json_object_set_new (spec, "long_name", json_string (arg->long_name));
        if (arg->short_name) {
            char short_name[2] = {arg->short_name, 0};
            json_object_set_new (spec, "short_name", json_string (short_name));
        }
        if (arg->default_value)
            json_object_set_new (spec, "default", json_string (arg->default_value));
        if (arg->help)
            json_object_set_new (spec, "help", json_string (arg->help));
        json_array_append_new (list, spec);
    }
    json_t *spec = json_pack ("{s:s, s:o}", "name", name, "args", list);
    if (about)
        json_object_set_new (spec, "about", json_string (about));
    return spec;
}
