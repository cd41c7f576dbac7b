// The campaign's processes: candidates (singleton-elect, client-go's example, under libfaketime), operator replicas.
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

void Campaign::startCandidate(Candidate& c) {
  ++c.incarnation;
  c.writer = "g" + std::to_string(c.group) + "c" + std::to_string(c.index) + "r" + std::to_string(c.incarnation);
  c.killed = false;
  c.stopped = false;
  c.started = Clock::now();
  const Group& g = groups_[static_cast<std::size_t>(c.group)];
  if (c.client_go) {
    c.process = chaos::clientGoCandidate(*client_go_binary_, c.kubeconfig.string(), g.lease, c.writer);
    return;
  }
  std::vector<std::string> command = {clientBinary(),
                                      "--port",
                                      std::to_string(g.store->port()),
                                      "--writer",
                                      c.writer,
                                      "--history",
                                      (g.dir / (c.writer + ".history")).string(),
                                      "--interval-ms",
                                      std::to_string(interval_ms_)};
  if (c.faketime.empty()) {
    c.process = electCandidate(g.lease, c.writer, command, c.kubeconfig.string());
    return;
  }
  // Only the elector's clocks are faked: its COMMAND's history is timed on the real monotonic clock, as every other
  // writer's (the linearizability check compares them).
  command.insert(command.begin(), {"/usr/bin/env", "-u", "LD_PRELOAD", "-u", "FAKETIME", "-u", "SINGLETON_CLOCK_RATE"});
  c.process = chaos::electCandidateWithEnvironment(g.lease, c.writer, command, c.kubeconfig.string(),
                                                   chaos::fakeTimeEnvironment(*fake_time_library_, c.faketime));
}

void Campaign::startOperator(int i) {
  if (i != kFakeTimeReplica || !fake_time_library_) {
    h_.startOperator(i);
    return;
  }
  const auto env = chaos::fakeTimeEnvironment(*fake_time_library_, kFakeTimeOperator);
  std::map<std::string, std::optional<std::string>> saved;
  for (const auto& [name, value] : env) {
    const char* old = std::getenv(name.c_str());
    saved[name] = old != nullptr ? std::optional<std::string>(old) : std::nullopt;
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  const auto restore = [&] {
    for (const auto& [name, old] : saved) {
      if (old) {
        ::setenv(name.c_str(), old->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  };
  try {
    h_.startOperator(i);
  } catch (...) {
    restore();
    throw;
  }
  restore();
}

void Campaign::ensureOperatorsRunning() {
  for (int i = 0; i < h_.operatorCount(); ++i) {
    if (!h_.operatorRunning(i)) startOperator(i);
  }
}

void Campaign::stopCandidates() {
  for (auto& c : candidates_) {
    if (!c->process) continue;
    if (c->stopped) c->process->signal(SIGCONT);
    c->stopped = false;
    if (c->proxy) c->proxy->heal();
    if (c->api_proxy) clearApiFaults(*c->api_proxy);
    if (c->process->running()) c->process->signal(SIGTERM);
  }
  for (auto& c : candidates_) {
    if (!c->process) continue;
    if (!c->process->wait(20s)) c->process->signal(SIGKILL);
    c->process->wait(5s);
    c->process.reset();
  }
}

Campaign::Candidate* Campaign::candidateByWriter(const std::string& writer) {
  for (auto& c : candidates_) {
    if (c->writer == writer) return c.get();
  }
  return nullptr;
}

void Campaign::checkProcesses() {
  for (int i = 0; i < h_.operatorCount(); ++i) {
    if (op_stopped_[static_cast<std::size_t>(i)] || h_.operatorRunning(i)) continue;
    const auto status = h_.waitOperatorExit(i, 0ms);
    unexpected_exits_.push_back("operator op-" + std::to_string(i) + " exited with status " +
                                std::to_string(status.value_or(-1)) + "\n" + h_.operatorLogTail(i, 30));
    startOperator(i);
  }
  for (auto& c : candidates_) {
    if (c->stopped || c->process->running()) continue;
    const int status = c->process->wait(0ms).value_or(-1);
    if (status == 128 + SIGKILL && c->killed) {
      // ours
    } else if (status == (c->client_go ? 0 : 1)) {
      // Its term ended (frozen or cut off past the lease): by design, a restart. client-go's example exits 0.
      ++lost_leadership_exits_;
    } else {
      unexpected_exits_.push_back(
          "candidate " + c->writer + " exited with status " + std::to_string(status) + "\n" +
          c->process->stderrText().substr(c->process->stderrText().size() -
                                          std::min<std::size_t>(2000, c->process->stderrText().size())));
    }
    startCandidate(*c);
  }
  if (!kubelet_dead_ && !h_.kubelet().running()) {
    kubelet_dead_ = true;
    unexpected_exits_.push_back("the simulated kubelet exited\n" + h_.kubeletLogTail(30));
  }
}

void Campaign::monitorLoop() {
  std::string last_rv;
  // Who held each Lease, and for how long as polled: shows that the faked-clock and client-go actors did lead.
  const auto count = [](std::map<std::string, Tenure>& tenures, const std::string& before, const std::string& holder,
                        Clock::duration since_last_poll) {
    if (!before.empty()) tenures[before].held += since_last_poll;
    if (!holder.empty() && holder != before) ++tenures[holder].terms;
  };
  auto last_poll = Clock::now();
  // When the last answered poll of client-go's group was sent.
  std::optional<Clock::time_point> last_answered_sent;
  while (!monitor_stop_) {
    const auto now = Clock::now();
    const auto elapsed = now - last_poll;
    last_poll = now;
    for (int g = 0; g < kGroupCount; ++g) {
      const auto sent = Clock::now();
      auto lease = monitor_client_->get(kube::kLeases, ns_, "chaos-g" + std::to_string(g));
      const auto answered = Clock::now();
      if (!lease.ok()) continue;
      const std::string rv = (*lease)["metadata"].value("resourceVersion", "");
      std::lock_guard lock(monitor_mutex_);
      LeaseSeen& seen = group_leases_[static_cast<std::size_t>(g)];
      // Per candidate, not per incarnation: "g1c2r3" counts as g1c2.
      const std::string holder = (*lease)["spec"].value("holderIdentity", "");
      const auto candidate = [](const std::string& identity) { return identity.substr(0, identity.rfind('r')); };
      count(group_tenures_[static_cast<std::size_t>(g)], candidate(seen.holder), candidate(holder), elapsed);
      if (g == kClientGoGroup) {
        const bool client_go = clientGoIdentity(holder);
        if (client_go && rv != seen.resource_version && last_answered_sent) {
          // It wrote the Lease after the previous poll was answered (reads are linearizable): after that poll's
          // sending.
          if (!client_go_term_ || holder != seen.holder) {
            if (client_go_term_) client_go_terms_.push_back(*client_go_term_);
            client_go_term_ = Term{answered, *last_answered_sent};
          } else {
            client_go_term_->to = *last_answered_sent;
          }
        } else if (!client_go && client_go_term_) {
          client_go_terms_.push_back(*client_go_term_);
          client_go_term_.reset();
        }
        last_answered_sent = sent;
      }
      if (rv == seen.resource_version) continue;
      seen = {holder, rv, Clock::now()};
    }
    auto lease = monitor_client_->get(kube::kLeases, kOperatorNamespace, kOperatorLease);
    if (lease.ok()) {
      const std::string rv = (*lease)["metadata"].value("resourceVersion", "");
      std::lock_guard lock(monitor_mutex_);
      const std::string holder = (*lease)["spec"].value("holderIdentity", "");
      count(op_tenures_, op_holder_, holder, elapsed);
      if (rv != last_rv) {
        last_rv = rv;
        op_holder_ = holder;
        op_renewed_ = Clock::now();
      }
    }
    std::this_thread::sleep_for(200ms);
  }
}

std::vector<std::string> Campaign::tenureSummary() {
  std::lock_guard lock(monitor_mutex_);
  const auto line = [](const std::string& title, const std::map<std::string, Tenure>& tenures) {
    std::ostringstream out;
    out << title << ":";
    for (const auto& [holder, t] : tenures) {
      out << " " << holder << " " << t.terms << " terms / " << ms(t.held) / 1000 << " s;";
    }
    return out.str();
  };
  std::vector<std::string> out = {line("operators' Lease", op_tenures_)};
  for (int g = 0; g < kGroupCount; ++g) {
    out.push_back(line("group " + std::to_string(g) + "'s Lease", group_tenures_[static_cast<std::size_t>(g)]));
  }
  return out;
}

Json Campaign::objectOf(const Workload& w) const {
  Json object = workloadObject(ns_, w.name, w.replicas);
  if (w.tail) object = chaos::agentWorkload(std::move(object), w.tail->dir());
  if (w.template_revision > 0) {
    object["spec"]["template"]["metadata"]["annotations"]["chaos.singleton.dev/revision"] =
        std::to_string(w.template_revision);
  }
  return object;
}

bool Campaign::annotatePod(const std::string& pod, const Json& value) {
  return h_.client()
      .mergePatch(kube::kPods, ns_, pod, {{"metadata", {{"annotations", {{"sim.singleton.dev/ready", value}}}}}})
      .ok();
}

bool Campaign::patchNodeHeartbeat(const std::string& node, const Json& value) {
  return h_.client()
      .mergePatch(kube::kNodes, "", node, {{"metadata", {{"annotations", {{"sim.singleton.dev/heartbeat", value}}}}}})
      .ok();
}

}  // namespace singleton::testing::chaos
