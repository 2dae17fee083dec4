#pragma once
// SIGHUP's rule for the settings that only take effect at start-up (a
// listen address, a state directory, ...).  A daemon keeps them in one
// struct, apart from what a reload may change, and lists them once:
//
//   struct ObserverStartup {
//       std::string dispatcher, state_dir;
//       static auto keys()
//       {
//           return std::make_tuple(restart_key("dispatcher", &ObserverStartup::dispatcher),
//                                  restart_key("state_dir", &ObserverStartup::state_dir));
//       }
//   };
//
// A reload is then one warning loop and an assignment:
//
//   warn_needs_restart(startup_, loaded.startup); // keeps startup_ as it is
//   settings_ = std::move(loaded.settings);
#include <cstddef>
#include <tuple>

#include <kiln/daemon.hpp>

namespace kiln {

// One setting of `Settings` that needs a restart: its config key and member.
template <typename Settings, typename T> struct RestartKey {
    const char *key;
    T Settings::*member;
};

template <typename Settings, typename T>
constexpr RestartKey<Settings, T> restart_key(const char *key, T Settings::*member)
{
    return {key, member};
}

// For each of Settings::keys() whose value differs between the running and
// the loaded config, log "reload: KEY changed: needs a restart; keeping the
// running value" (warn_needs_restart in daemon.hpp).  How many differ.
template <typename Settings>
size_t warn_needs_restart(const Settings &running, const Settings &loaded)
{
    size_t changed = 0;
    std::apply(
        [&](const auto &...keys) {
            ((changed += warn_needs_restart(keys.key,
                                            !(running.*(keys.member) == loaded.*(keys.member)))),
             ...);
        },
        Settings::keys());
    return changed;
}

} // namespace kiln
