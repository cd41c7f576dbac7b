// What healthy means per scope, from independent observers (auditor, stores, Leases, activity logs).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>

#include "chaos/campaign.h"
#include "support/elect_candidate.h"
#include "support/fenced_register.h"

namespace singleton::testing::chaos {

using Json = nlohmann::json;

void Campaign::observe() {
  for (auto& g : groups_) {
    if (auto v = g.reader->read(); v && *v != g.value) {
      g.value = *v;
      g.changed = Clock::now();
    }
  }
}

bool Campaign::operatorsHealthy(Clock::time_point since) {
  std::string holder;
  Clock::time_point renewed;
  {
    std::lock_guard lock(monitor_mutex_);
    holder = op_holder_;
    renewed = op_renewed_;
  }
  if (renewed <= since || Clock::now() - renewed > h_.leaseDuration()) return false;
  for (int i = 0; i < h_.operatorCount(); ++i) {
    if (OperatorHarness::identity(i) != holder) continue;
    const auto u = static_cast<std::size_t>(i);
    return h_.operatorRunning(i) && !op_stopped_[u] && !op_blackholed_[u] && !op_api_faulted_[u];
  }
  return false;
}

bool Campaign::groupHealthy(int g, Clock::time_point since) {
  const Group& group = groups_[static_cast<std::size_t>(g)];
  const auto runs = [](const Candidate* c) {
    return c != nullptr && !c->stopped && c->process && c->process->running();
  };
  if (group.changed > since && Clock::now() - group.changed <= 3s &&
      runs(candidateByWriter(group.value.substr(0, group.value.find('/'))))) {
    return true;
  }
  LeaseSeen lease;
  {
    std::lock_guard lock(monitor_mutex_);
    lease = group_leases_[static_cast<std::size_t>(g)];
  }
  const Candidate* holder = candidateByWriter(lease.holder);
  return holder != nullptr && holder->client_go && runs(holder) && lease.changed > since &&
         Clock::now() - lease.changed <= 3s;
}

std::vector<bool> Campaign::workloadsHealthy() {
  std::vector<bool> out(workloads_.size(), false);
  const auto now = Clock::now();
  auditor_.waitUntil(
      [&](const LeaderAuditor::State& s) {
        for (std::size_t i = 0; i < workloads_.size(); ++i) {
          const Workload& w = workloads_[i];
          auto it = s.workloads.find(w.name);
          if (w.deleted || it == s.workloads.end() || it->second.leaders.size() != 1) continue;
          int ready = 0, live = 0;
          bool leader_ok = false, current = true;
          std::set<std::string> hashes;
          for (const auto& [name, p] : it->second.pods) {
            if (p.terminating) continue;
            ++live;
            ready += p.ready;
            hashes.insert(p.template_hash);
            current = current && !w.stale_hashes.contains(p.template_hash);
            if (!p.leader() || !p.ready || !p.token) continue;
            leader_ok = !w.tail || w.tail->running(name, std::strtoll(p.token->c_str(), nullptr, 10), now, 1000ms);
          }
          out[i] = leader_ok && current && hashes.size() <= 1 && live == w.replicas && ready == live;
        }
        return true;
      },
      0ms);
  return out;
}

bool Campaign::leaderCommandRunning(const Workload& w, Clock::time_point beat_after) {
  const auto leader = auditor_.currentLeader(w.name);
  return leader && leader->token &&
         w.tail->running(leader->name, std::strtoll(leader->token->c_str(), nullptr, 10), Clock::now(), 1000ms,
                         beat_after);
}

void Campaign::checkActivity() {
  for (auto& w : workloads_) {
    if (!w.tail) continue;
    w.tail->refresh();
    for (auto& v : w.tail->newViolations()) activity_violations_.push_back(w.name + ": " + v);
  }
}

}  // namespace singleton::testing::chaos
