//  toml++ -> jansson. The only C++ in modcore; see core/toml.h.
#include "core/toml.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <toml++/toml.h>

static json_t *s_convert (const toml::node &node);

static json_t *s_table (const toml::table &table)
{
    json_t *obj = json_object ();
    for (auto &&[key, value] : table)
        json_object_set_new (obj, std::string (key.str ()).c_str (), s_convert (value));
    return obj;
}

static json_t *s_convert (const toml::node &node)
{
    if (auto t = node.as_table ())
        return s_table (*t);
    if (auto a = node.as_array ()) {
        json_t *arr = json_array ();
        for (auto &&item : *a)
            json_array_append_new (arr, s_convert (item));
        return arr;
    }
    if (auto s = node.as_string ())
        return json_stringn (s->get ().data (), s->get ().size ());
    if (auto i = node.as_integer ())
        return json_integer ((json_int_t)i->get ());
    if (auto f = node.as_floating_point ())
        return json_real (f->get ());
    if (auto b = node.as_boolean ())
        return json_boolean (b->get ());
    std::ostringstream out;
    if (auto d = node.as_date ())
        out << d->get ();
    else if (auto tm = node.as_time ())
        out << tm->get ();
    else if (auto dt = node.as_date_time ())
        out << dt->get ();
    return json_string (out.str ().c_str ());
}

extern "C" json_t *mc_toml_parse (const char *text, size_t len, char *err, size_t err_size)
{
    try {
        toml::table table = toml::parse (std::string_view (text, len));
        return s_table (table);
    } catch (const toml::parse_error &e) {
        if (err)
            std::snprintf (err, err_size, "line %u, column %u: %s",
                           (unsigned)e.source ().begin.line, (unsigned)e.source ().begin.column,
                           std::string (e.description ()).c_str ());
        return nullptr;
    } catch (const std::exception &e) {
        if (err)
            std::snprintf (err, err_size, "%s", e.what ());
        return nullptr;
    }
}

extern "C" json_t *mc_toml_parse_file (const char *path, char *err, size_t err_size)
{
    std::ifstream in (path, std::ios::binary);
    if (!in) {
        if (err)
            std::snprintf (err, err_size, "cannot open %s", path);
        return nullptr;
    }
    std::string text;
    char buf[65536];
    while (in.read (buf, sizeof buf) || in.gcount () > 0) {
        text.append (buf, (size_t)in.gcount ());
        if (text.size () > (1u << 20)) {
            if (err)
                std::snprintf (err, err_size, "%s is larger than 1 MiB", path);
            return nullptr;
        }
    }
    return mc_toml_parse (text.data (), text.size (), err, err_size);
}
