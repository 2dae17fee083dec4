// The registered runners and the ones expected back after a restart.
#include "runner_registry.hpp"

#include "scheduler.hpp"

namespace kiln {

std::string runner_state(const RunnerSlotInfo &r)
{
    if (!r.paused.empty())
        return "paused: " + r.paused;
    return r.slots == 0 ? "draining" : "ready";
}

RunnerSlotInfo *RunnerRegistry::find(const std::string &name)
{
    auto it = runners_.find(name);
    return it == runners_.end() ? nullptr : &it->second;
}

const RunnerSlotInfo *RunnerRegistry::find(const std::string &name) const
{
    auto it = runners_.find(name);
    return it == runners_.end() ? nullptr : &it->second;
}

RunnerSlotInfo *RunnerRegistry::on(const Connection &conn)
{
    RunnerSlotInfo *runner = find(conn.name);
    return runner && runner->conn.get() == &conn ? runner : nullptr;
}

uint32_t RunnerRegistry::slots() const
{
    uint32_t n = 0;
    for (const auto &[name, r] : runners_)
        n += r.slots;
    return n;
}

uint32_t RunnerRegistry::slots_for(const std::vector<std::string> &labels) const
{
    uint32_t n = 0;
    for (const auto &[name, r] : runners_)
        if (labels_match(labels, r.labels))
            n += r.slots;
    return n;
}

RunnerSlotInfo &RunnerRegistry::add(const std::string &name, std::shared_ptr<Connection> conn,
                                    std::set<uint64_t> adopted, int64_t now)
{
    RunnerSlotInfo &runner = runners_[name] = RunnerSlotInfo{};
    runner.name = name;
    runner.conn = std::move(conn);
    runner.connected_unix_ms = now;
    runner.adopted = std::move(adopted);
    runner.awaiting_heartbeat = !runner.adopted.empty();
    expected_.erase(name);
    return runner;
}

std::vector<std::string> RunnerRegistry::take_missing()
{
    std::vector<std::string> missing;
    for (const auto &name : expected_)
        if (!runners_.count(name))
            missing.push_back(name);
    expected_.clear();
    return missing;
}

} // namespace kiln
