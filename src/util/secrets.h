// Which environment variables a child process (a `command` or `worker` step, an analyze engine
// command) must not inherit unless its step names them in `pass_env`: secrets by name, by value,
// and by configuration. Compiled into baton_api, so steps register names without starting children.
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <set>
#include <string>
#include <string_view>

namespace baton {

// A name that looks like a secret: BATON_TOKEN, BATON_REDIS_PASSWORD, REDISCLI_AUTH, names
// containing PASSWORD, SECRET, API_KEY, APIKEY, TOKEN, PASSWD, CREDENTIAL; or one registered.
bool IsSecretName(std::string_view name);

// A value that carries a password: a URL with one in its user info (`redis://:pw@host`,
// `rediss://user:pw@host`, `postgres://u:pw@h/db`: BATON_REDIS with a password in it) or a
// `password=` parameter.
bool IsSecretValue(std::string_view value);

// Registers a variable the configuration says holds a secret, whatever its name (an llm step's
// `api_key_env`, e.g. MY_LLM_KEY): from now on IsSecretName(name) is true in this process.
void RegisterSecretName(std::string_view name);

// Whether the environment entry "NAME=VALUE" stays out of a child's environment: a secret by
// name or value that `pass_env` does not name.
bool WithheldFromChildren(std::string_view entry, const std::set<std::string>& pass_env);

}  // namespace baton
