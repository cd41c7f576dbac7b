// Injecting and clearing each kind of fault.
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

bool Campaign::tryInject(Kind kind) {
  const bool cp_active = activeOf([](const Active& a) { return controlPlane(a.kind); });
  if (usesApi(kind) && cp_active) return false;
  if (controlPlane(kind) && (cp_active || activeOf([](const Active& a) { return usesApi(a.kind); }))) {
    return false;
  }
  switch (kind) {
    case Kind::kOpKill:
    case Kind::kOpStop:
    case Kind::kOpBlackhole:
    case Kind::kOpReset: {
      int held = 0;
      std::vector<int> free;
      for (int i = 0; i < h_.operatorCount(); ++i) {
        if (op_busy_[static_cast<std::size_t>(i)]) {
          ++held;
        } else {
          free.push_back(i);
        }
      }
      if (free.empty() || ((kind == Kind::kOpStop || kind == Kind::kOpBlackhole) && held >= 2)) return false;
      // Half the time the operator leader, when it is free.
      std::optional<int> leader;
      {
        std::lock_guard lock(monitor_mutex_);
        for (int i : free) {
          if (OperatorHarness::identity(i) == op_holder_) leader = i;
        }
      }
      const int i = leader && std::bernoulli_distribution(0.5)(rng_) ? *leader : pick(free);
      const auto u = static_cast<std::size_t>(i);
      if (kind == Kind::kOpKill) {
        h_.signalOperator(i, SIGKILL);
        h_.waitOperatorExit(i, 10s);
        startOperator(i);
        instant(kind, i);
      } else if (kind == Kind::kOpStop) {
        op_busy_[u] = op_stopped_[u] = true;
        h_.signalOperator(i, SIGSTOP);
        addActive(kind, i, h_.leaseDuration() + hold(1000, 3000), [this, i, u] {
          h_.signalOperator(i, SIGCONT);
          op_busy_[u] = op_stopped_[u] = false;
        });
      } else if (kind == Kind::kOpBlackhole) {
        op_busy_[u] = op_blackholed_[u] = true;
        h_.operatorProxy(i).blackhole();
        addActive(kind, i, hold(3500, 6000), [this, i, u] {
          h_.operatorProxy(i).heal();
          op_busy_[u] = op_blackholed_[u] = false;
        });
      } else {
        h_.operatorProxy(i).resetAll();
        instant(kind, i);
      }
      return true;
    }
    case Kind::kCandKill:
    case Kind::kCandStop:
    case Kind::kCandBlackhole:
    case Kind::kCandReset: {
      const int g = std::uniform_int_distribution<int>(0, kGroupCount - 1)(rng_);
      Candidate* c = pickCandidate(g, /*limit_held=*/kind == Kind::kCandStop || kind == Kind::kCandBlackhole);
      if (c == nullptr) return false;
      if (kind == Kind::kCandKill) {
        c->killed = true;
        c->process->signal(SIGKILL);
        c->process->wait(5s);
        startCandidate(*c);
        instant(kind, g);
      } else if (kind == Kind::kCandStop) {
        c->busy = c->stopped = true;
        paused_writers_.insert(c->writer);  // its COMMAND runs on meanwhile
        c->process->signal(SIGSTOP);
        addActive(kind, g, 4000ms + hold(1000, 3000), [c] {
          c->process->signal(SIGCONT);
          c->busy = c->stopped = false;
        });
      } else if (kind == Kind::kCandBlackhole) {
        c->busy = true;
        c->proxy->blackhole();
        addActive(kind, g, hold(3500, 6000), [c] {
          c->proxy->heal();
          c->busy = false;
        });
      } else {
        c->proxy->resetAll();
        instant(kind, g);
      }
      return true;
    }
    case Kind::kApiRestart:
      h_.cluster().restartApiserver(/*kill=*/std::bernoulli_distribution(0.5)(rng_));
      instant(kind, -1);
      return true;
    case Kind::kEtcdKill:
      h_.cluster().restartEtcd(/*kill=*/true);
      instant(kind, -1);
      return true;
    case Kind::kApiStop:
    case Kind::kEtcdStop: {
      const std::string component = kind == Kind::kApiStop ? "kube-apiserver" : "etcd";
      h_.cluster().signalComponent(component, SIGSTOP);
      addActive(kind, -1, kind == Kind::kApiStop ? hold(2000, 4000) : hold(2000, 5000),
                [this, component] { h_.cluster().signalComponent(component, SIGCONT); });
      return true;
    }
    case Kind::kApiConflict:
    case Kind::kApiThrottle:
    case Kind::kApi5xx:
    case Kind::kApiGarbage:
    case Kind::kApiDropAnswer:
    case Kind::kApiWatchLag:
    case Kind::kApiDelay:
      return injectApiFault(kind);
    case Kind::kApiHold:
      return injectHold();
    case Kind::kCandApi:
      return injectCandidateApiFault();
    case Kind::kClientGoLeads:
      return injectClientGoLeads();
    case Kind::kGroupLeaseDelete:
      return injectGroupLeaseDelete();
    case Kind::kOpFreezeAtWorst:
    case Kind::kCandFreezeAtWorst:
      return injectFreezeAtWorst(kind);
    case Kind::kClientGoKill:
    case Kind::kClientGoStop: {
      Candidate* c = nullptr;
      int held = 0;
      for (auto& cand : candidates_) {
        if (cand->group != kClientGoGroup) continue;
        held += cand->busy;
        if (cand->client_go) c = cand.get();
      }
      if (c == nullptr || c->busy || (kind == Kind::kClientGoStop && held >= 2)) return false;
      if (kind == Kind::kClientGoKill) {
        c->killed = true;
        c->process->signal(SIGKILL);
        c->process->wait(5s);
        startCandidate(*c);
        instant(kind, kClientGoGroup);
      } else {
        c->busy = c->stopped = true;
        c->process->signal(SIGSTOP);
        addActive(kind, kClientGoGroup, 4000ms + hold(1000, 3000), [c] {
          c->process->signal(SIGCONT);
          c->busy = c->stopped = false;
        });
      }
      return true;
    }
    case Kind::kNodeHeartbeat: {
      if (activeOf([](const Active& a) { return a.kind == Kind::kNodeHeartbeat; })) return false;
      const auto nodes = h_.nodeNames();
      const std::string node = pick(nodes);
      if (!patchNodeHeartbeat(node, "stopped")) return false;
      addActive(kind, -1, hold(12000, 15000),
                [this, node] { eventually([&] { return patchNodeHeartbeat(node, nullptr); }, 30s, 200ms); });
      return true;
    }
    default:
      break;
  }
  // Workload faults.
  const bool agent_kind = kind == Kind::kAgentKill || kind == Kind::kAgentStop || kind == Kind::kAgentFreezeOnMove;
  std::vector<int> free;
  for (std::size_t i = 0; i < workloads_.size(); ++i) {
    const Workload& w = workloads_[i];
    if (w.busy || (agent_kind && !w.tail)) continue;
    free.push_back(static_cast<int>(i));
  }
  if (free.empty()) return false;
  const int wi = pick(free);
  Workload& w = workloads_[static_cast<std::size_t>(wi)];
  const auto leader = auditor_.currentLeader(w.name);
  switch (kind) {
    case Kind::kPodDelete: {
      if (!leader || leader->terminating) return false;
      if (!h_.client().remove(kube::kPods, ns_, leader->name).ok()) return false;
      instant(kind, wi);
      return true;
    }
    case Kind::kPodUnready: {
      if (!leader || leader->terminating) return false;
      const std::string pod = leader->name;
      if (!annotatePod(pod, "false")) return false;
      w.busy = true;
      addActive(kind, wi, hold(3000, 6000), [this, pod, wi] {
        // The pod may be gone (replaced); then there is nothing to restore.
        eventually([&] { return annotatePod(pod, nullptr) || !h_.getPod(ns_, pod); }, 30s, 200ms);
        workloads_[static_cast<std::size_t>(wi)].busy = false;
      });
      return true;
    }
    case Kind::kSwitchover: {
      if (!leader) return false;
      const std::vector<std::string> targets = switchoverTargets(w.name);
      if (targets.empty() || !switchOver(w.name, pick(targets))) return false;
      instant(kind, wi);
      return true;
    }
    case Kind::kScale: {
      std::vector<int> sizes;
      for (int n = 1; n <= 3; ++n) {
        if (n != w.replicas) sizes.push_back(n);
      }
      const int n = pick(sizes);
      if (!h_.client().mergePatch(kWorkloadResource, ns_, w.name, {{"spec", {{"replicas", n}}}}).ok()) return false;
      w.replicas = n;
      instant(kind, wi);
      return true;
    }
    case Kind::kLeaseDelete: {
      if (!h_.client().remove(kube::kLeases, ns_, w.name + "-leader").ok()) return false;
      instant(kind, wi);
      return true;
    }
    case Kind::kTemplateChange: {
      // Every pod's template is outdated now: recovered once all pods are of one newer template.
      std::set<std::string> hashes;
      auditor_.waitUntil(
          [&](const LeaderAuditor::State& s) {
            if (auto it = s.workloads.find(w.name); it != s.workloads.end()) {
              for (const auto& [name, p] : it->second.pods) hashes.insert(p.template_hash);
            }
            return true;
          },
          0ms);
      const Json patch = {
          {"spec",
           {{"template",
             {{"metadata",
               {{"annotations", {{"chaos.singleton.dev/revision", std::to_string(w.template_revision + 1)}}}}}}}}}};
      if (!h_.client().mergePatch(kWorkloadResource, ns_, w.name, patch).ok()) return false;
      ++w.template_revision;
      w.stale_hashes.insert(hashes.begin(), hashes.end());
      instant(kind, wi);
      return true;
    }
    case Kind::kRecreate: {
      if (!h_.client().remove(kWorkloadResource, ns_, w.name).ok()) return false;
      w.busy = w.deleted = true;
      const std::string name = w.name;
      active_.push_back({kind, wi, Clock::now() + hold(1000, 3000),
                         [this, wi] {
                           Workload& again = workloads_[static_cast<std::size_t>(wi)];
                           again.stale_hashes.clear();  // a new object: its pods are all new
                           ++again.generation;
                           if (again.tail) {
                             // The new object's pods log into a directory of their own: its tokens may start again
                             // (per object), and its windows are checked among themselves. Every pod of the old one
                             // is gone (so are its processes): the old windows are complete.
                             again.tail->refresh();
                             for (auto& v : again.tail->newViolations()) {
                               activity_violations_.push_back(again.name + ": " + v);
                             }
                             const auto dir = again.tail->dir().parent_path() / (ns_ + "-activity-" + again.name + "-" +
                                                                                 std::to_string(again.generation));
                             std::filesystem::remove_all(dir);
                             std::filesystem::create_directories(dir);
                             std::filesystem::permissions(dir, std::filesystem::perms::all);
                             again.retired_tails.push_back(std::move(again.tail));
                             again.tail = std::make_unique<chaos::ActivityTail>(dir);
                           }
                           eventually([&] { return h_.createWorkload(objectOf(again)).ok(); }, 30s, 200ms);
                           again.busy = again.deleted = false;
                         },
                         // The old object and every pod of it gone first (their names are the new object's).
                         [this, name] {
                           bool pods_gone = false;
                           auditor_.waitUntil(
                               [&](const LeaderAuditor::State& s) {
                                 auto it = s.workloads.find(name);
                                 pods_gone = it == s.workloads.end() || it->second.pods.empty();
                                 return true;
                               },
                               0ms);
                           return pods_gone && !h_.getWorkload(ns_, name);
                         }});
      return true;
    }
    case Kind::kAgentFreezeOnMove:
      return injectAgentFreezeOnMove(w, wi);
    case Kind::kAgentKill:
    case Kind::kAgentStop: {
      // The leader's agent more often than not, else any live pod's.
      std::vector<LeaderAuditor::PodView> pods;
      auditor_.waitUntil(
          [&](const LeaderAuditor::State& s) {
            if (auto it = s.workloads.find(w.name); it != s.workloads.end()) {
              for (const auto& [name, p] : it->second.pods) {
                if (!p.terminating) pods.push_back(p);
              }
            }
            return true;
          },
          0ms);
      if (pods.empty()) return false;
      const LeaderAuditor::PodView target =
          leader && !leader->terminating && std::bernoulli_distribution(0.6)(rng_) ? *leader : pick(pods);
      const auto pid = chaos::agentProcessOfPod(target.uid);
      if (!pid) return false;
      if (kind == Kind::kAgentKill) {
        if (::kill(*pid, SIGKILL) != 0) return false;
        instant(kind, wi);
        return true;
      }
      if (::kill(*pid, SIGSTOP) != 0) return false;
      w.busy = true;
      const pid_t frozen = *pid;
      addActive(kind, wi, hold(kAgentFreezeMinMs, kAgentFreezeMaxMs), [this, frozen, wi] {
        ::kill(frozen, SIGCONT);
        workloads_[static_cast<std::size_t>(wi)].busy = false;
      });
      return true;
    }
    default:
      return false;
  }
}

bool Campaign::injectApiFault(Kind kind) {
  int held = 0;
  std::vector<int> free;
  for (int i = 0; i < h_.operatorCount(); ++i) {
    if (op_busy_[static_cast<std::size_t>(i)]) {
      ++held;
    } else {
      free.push_back(i);
    }
  }
  if (free.empty() || held >= 2) return false;
  // A follower sends little but watches (its caches are warm, only the leader reconciles): the leader half the time.
  std::optional<int> leader;
  {
    std::lock_guard lock(monitor_mutex_);
    for (int i : free) {
      if (OperatorHarness::identity(i) == op_holder_) leader = i;
    }
  }
  const int i = leader && std::bernoulli_distribution(0.5)(rng_) ? *leader : pick(free);
  const auto u = static_cast<std::size_t>(i);
  ApiProxy& proxy = h_.operatorApiProxy(i);
  const std::uint64_t before = apiHits(proxy);
  const auto how_long = armApiFault(proxy, kind);
  op_busy_[u] = op_api_faulted_[u] = true;
  addActive(kind, i, how_long, [this, kind, before, i, u] {
    ApiProxy& p = h_.operatorApiProxy(i);
    clearApiFaults(p);
    stats_[kind].hit += apiHits(p) - before;
    op_busy_[u] = op_api_faulted_[u] = false;
  });
  return true;
}

Campaign::Candidate* Campaign::pickCandidate(int g, bool limit_held) {
  const std::string writer =
      groups_[static_cast<std::size_t>(g)].value.substr(0, groups_[static_cast<std::size_t>(g)].value.find('/'));
  int held = 0;
  std::vector<Candidate*> free;
  Candidate* leader = nullptr;
  for (auto& c : candidates_) {
    if (c->group != g) continue;
    if (c->busy) {
      ++held;
      continue;
    }
    free.push_back(c.get());
    if (c->writer == writer) leader = c.get();
  }
  if (free.empty() || (limit_held && held >= 2)) return nullptr;
  return leader != nullptr && std::bernoulli_distribution(0.6)(rng_) ? leader : pick(free);
}

bool Campaign::injectCandidateApiFault() {
  const int g = between(0, kGroupCount - 1);
  Candidate* c = pickCandidate(g, /*limit_held=*/true);
  if (c == nullptr) return false;
  static constexpr std::array kApiKinds = {Kind::kApiConflict,   Kind::kApiThrottle, Kind::kApi5xx,  Kind::kApiGarbage,
                                           Kind::kApiDropAnswer, Kind::kApiWatchLag, Kind::kApiDelay};
  const Kind kind = kApiKinds[static_cast<std::size_t>(between(0, static_cast<int>(kApiKinds.size()) - 1))];
  const std::uint64_t before = apiHits(*c->api_proxy);
  const auto how_long = armApiFault(*c->api_proxy, kind);
  c->busy = true;
  addActive(Kind::kCandApi, g, how_long, [this, c, before] {
    clearApiFaults(*c->api_proxy);
    stats_[Kind::kCandApi].hit += apiHits(*c->api_proxy) - before;
    c->busy = false;
  });
  return true;
}

std::chrono::milliseconds Campaign::armApiFault(ApiProxy& proxy, Kind kind) {
  const ApiProxy::Match all = [](const ApiProxy::Request&) { return true; };
  const ApiProxy::Match any = [](const ApiProxy::Request& r) { return !r.watch(); };
  const ApiProxy::Match writes = [](const ApiProxy::Request& r) { return r.method != "GET" && !r.watch(); };
  const ApiProxy::Match watches = [](const ApiProxy::Request& r) { return r.watch(); };
  std::chrono::milliseconds how_long = hold(2000, 5000);
  switch (kind) {
    case Kind::kApiConflict:
      proxy.injectAnswers(writes, between(2, 6), ApiProxy::Answer::kConflict);
      break;
    case Kind::kApiThrottle:
      proxy.injectAnswers(all, between(2, 6), ApiProxy::Answer::kTooManyRequests);
      break;
    case Kind::kApi5xx:
      proxy.injectAnswers(
          all, between(2, 6),
          std::bernoulli_distribution(0.5)(rng_) ? ApiProxy::Answer::kInternalError : ApiProxy::Answer::kUnavailable);
      break;
    case Kind::kApiGarbage:
      proxy.injectAnswers(
          all, between(1, 3),
          std::bernoulli_distribution(0.5)(rng_) ? ApiProxy::Answer::kGarbage : ApiProxy::Answer::kTruncated);
      break;
    case Kind::kApiDropAnswer:
      proxy.dropNextAnswer(any);
      how_long = hold(3000, 6000);
      break;
    case Kind::kApiWatchLag:
      proxy.setWatchDelay(watches, hold(1000, 3000));
      how_long = hold(5000, 10000);
      break;
    case Kind::kApiDelay:
      proxy.setDelay(any, hold(100, 5000));
      how_long = hold(3000, 8000);
      break;
    default:
      break;
  }
  return how_long;
}

std::uint64_t Campaign::apiHits(ApiProxy& proxy) {
  return proxy.injectedAnswers() + proxy.delayedRequests() + proxy.drops().size();
}

bool Campaign::injectHold() {
  int held = 0;
  for (bool b : op_busy_) held += b;
  if (held >= 2) return false;
  std::optional<int> leader;
  {
    std::lock_guard lock(monitor_mutex_);
    for (int i = 0; i < h_.operatorCount(); ++i) {
      if (OperatorHarness::identity(i) == op_holder_) leader = i;
    }
  }
  if (!leader || op_busy_[static_cast<std::size_t>(*leader)]) return false;
  const int i = *leader;
  const auto u = static_cast<std::size_t>(i);
  ApiProxy& proxy = h_.operatorApiProxy(i);
  const std::string operator_lease =
      std::string("/apis/coordination.k8s.io/v1/namespaces/") + kOperatorNamespace + "/leases/" + kOperatorLease;
  auto pod_write_held = std::make_shared<bool>(false);  // evaluated under the proxy's lock
  proxy.holdRequests([operator_lease, pod_write_held](const ApiProxy::Request& r) {
    if (r.method == "GET" || r.watch()) return false;
    if (r.path == operator_lease) return true;
    if (r.path.find("/pods") == std::string::npos || *pod_write_held) return false;
    *pod_write_held = true;
    return true;
  });
  op_busy_[u] = op_api_faulted_[u] = true;
  const std::size_t before = proxy.held().size();
  active_.push_back({Kind::kApiHold, i, Clock::now() + 1s,
                     [this, before, i, u] {
                       ApiProxy& p = h_.operatorApiProxy(i);
                       p.holdRequests(nullptr);
                       p.releaseHeldRequests();
                       stats_[Kind::kApiHold].hit += p.held().size() - before;
                       op_busy_[u] = op_api_faulted_[u] = false;
                     },
                     // Released only once another replica leads (or kClearWait later).
                     [this, i] {
                       std::lock_guard lock(monitor_mutex_);
                       return !op_holder_.empty() && op_holder_ != OperatorHarness::identity(i);
                     }});
  return true;
}

bool Campaign::injectClientGoLeads() {
  Candidate* client_go = nullptr;
  std::vector<Candidate*> others;
  for (auto& c : candidates_) {
    if (c->group != kClientGoGroup) continue;
    if (c->busy) return false;
    if (c->client_go) {
      client_go = c.get();
    } else {
      others.push_back(c.get());
    }
  }
  if (client_go == nullptr || !client_go->process || !client_go->process->running()) return false;
  {
    std::lock_guard lock(monitor_mutex_);
    if (clientGoIdentity(group_leases_[static_cast<std::size_t>(kClientGoGroup)].holder)) return false;
  }
  // Cut off, not frozen: each elector stops its COMMAND by its renew deadline, and client-go's candidate takes the
  // Lease once it expires.
  for (Candidate* c : others) {
    c->busy = true;
    c->proxy->blackhole();
  }
  client_go->busy = true;
  active_.push_back({Kind::kClientGoLeads, kClientGoGroup, Clock::now() + 1s,
                     [this, others, client_go] {
                       bool led = false;
                       {
                         std::lock_guard lock(monitor_mutex_);
                         led = clientGoIdentity(group_leases_[static_cast<std::size_t>(kClientGoGroup)].holder);
                       }
                       stats_[Kind::kClientGoLeads].hit += led;
                       if (!led) {
                         const std::string err = client_go->process ? client_go->process->stderrText() : "";
                         injection_errors_.push_back(
                             "client-go's candidate " + client_go->writer + " did not take the Lease within " +
                             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kClearWait).count()) +
                             " s; its stderr ends:\n" +
                             err.substr(err.size() - std::min<std::size_t>(1500, err.size())));
                       }
                       for (Candidate* c : others) {
                         c->proxy->heal();
                         c->busy = false;
                       }
                       client_go->busy = false;
                     },
                     [this] {
                       std::lock_guard lock(monitor_mutex_);
                       return clientGoIdentity(group_leases_[static_cast<std::size_t>(kClientGoGroup)].holder);
                     }});
  return true;
}

bool Campaign::injectGroupLeaseDelete() {
  std::vector<int> groups;
  for (int g = 0; g < kGroupCount; ++g) {
    if (g == kClientGoGroup) continue;
    // Every candidate running for a while, unhindered: each has seen the Lease's tokens, so whoever creates it again
    // continues above them (a candidate started after the deletion could not know them: docs/design.md).
    bool settled = true;
    for (const auto& c : candidates_) {
      if (c->group != g) continue;
      settled = settled && !c->busy && c->process && c->process->running() && Clock::now() - c->started > 5s;
    }
    if (settled) groups.push_back(g);
  }
  if (groups.empty()) return false;
  const int g = pick(groups);
  if (!h_.client().remove(kube::kLeases, ns_, "chaos-g" + std::to_string(g)).ok()) return false;
  instant(Kind::kGroupLeaseDelete, g);
  return true;
}

bool Campaign::injectFreezeAtWorst(Kind kind) {
  // The freeze happens on the proxy's thread; the clear may race with it: one mutex, and a clear that comes first
  // cancels it.
  struct Freeze {
    std::mutex mutex;
    pid_t pid = -1;
    bool cancelled = false;
    std::optional<Clock::time_point> frozen_at;
  };
  auto freeze = std::make_shared<Freeze>();
  const bool after_cas = std::bernoulli_distribution(0.5)(rng_);
  const std::string leases = "/apis/coordination.k8s.io/v1/namespaces/";
  ApiProxy* proxy = nullptr;
  std::string lease_path;
  std::function<void()> resume;
  int target = -1;
  if (kind == Kind::kOpFreezeAtWorst) {
    int held = 0;
    for (bool b : op_busy_) held += b;
    std::optional<int> leader;
    {
      std::lock_guard lock(monitor_mutex_);
      for (int i = 0; i < h_.operatorCount(); ++i) {
        if (OperatorHarness::identity(i) == op_holder_) leader = i;
      }
    }
    if (!leader || op_busy_[static_cast<std::size_t>(*leader)] || held >= 2) return false;
    const int i = *leader;
    const auto u = static_cast<std::size_t>(i);
    freeze->pid = h_.operatorPid(i);
    proxy = &h_.operatorApiProxy(i);
    lease_path = leases + kOperatorNamespace + "/leases/" + kOperatorLease;
    op_busy_[u] = op_stopped_[u] = true;
    resume = [this, u] { op_busy_[u] = op_stopped_[u] = false; };
    target = i;
  } else {
    const int g = between(0, kGroupCount - 1);
    const Group& group = groups_[static_cast<std::size_t>(g)];
    Candidate* leader = candidateByWriter(group.value.substr(0, group.value.find('/')));
    int held = 0;
    for (auto& c : candidates_) held += c->group == g && c->busy;
    if (leader == nullptr || leader->busy || held >= 2 || !leader->process || !leader->process->running()) {
      return false;
    }
    freeze->pid = leader->process->pid();
    proxy = leader->api_proxy.get();
    lease_path = leases + ns_ + "/leases/chaos-g" + std::to_string(g);
    leader->busy = leader->stopped = true;
    paused_writers_.insert(leader->writer);  // its COMMAND runs on while it is frozen
    resume = [leader] { leader->busy = leader->stopped = false; };
    target = g;
  }
  if (freeze->pid <= 0) {
    resume();
    return false;
  }
  const ApiProxy::Match match =
      after_cas ? ApiProxy::Match(
                      [lease_path](const ApiProxy::Request& r) { return r.method == "PUT" && r.path == lease_path; })
                : ApiProxy::Match([](const ApiProxy::Request& r) { return r.method != "GET" && !r.watch(); });
  proxy->triggerOn(match, after_cas ? ApiProxy::Moment::kAnswerRelayed : ApiProxy::Moment::kRequestSent, [freeze] {
    std::lock_guard lock(freeze->mutex);
    if (freeze->cancelled) return;
    ::kill(freeze->pid, SIGSTOP);
    freeze->frozen_at = Clock::now();
  });
  const auto frozen_for = h_.leaseDuration() + hold(1000, 3000);
  active_.push_back({kind, target, Clock::now() + 1s,
                     [this, kind, proxy, freeze, resume] {
                       proxy->disarmTrigger();
                       {
                         std::lock_guard lock(freeze->mutex);
                         freeze->cancelled = true;
                         if (freeze->frozen_at) {
                           ::kill(freeze->pid, SIGCONT);
                           ++stats_[kind].hit;
                         }
                       }
                       resume();
                     },
                     // Until it has been frozen past the lease (or, if it sent nothing that matched, kClearWait).
                     [freeze, frozen_for] {
                       std::lock_guard lock(freeze->mutex);
                       return freeze->frozen_at && Clock::now() - *freeze->frozen_at > frozen_for;
                     }});
  return true;
}

std::vector<std::string> Campaign::switchoverTargets(const std::string& workload) {
  std::vector<std::string> targets;
  auditor_.waitUntil(
      [&](const LeaderAuditor::State& s) {
        auto it = s.workloads.find(workload);
        if (it == s.workloads.end()) return true;
        for (const auto& [name, p] : it->second.pods) {
          if (!p.leader() && p.ready && !p.terminating) targets.push_back(name);
        }
        return true;
      },
      0ms);
  return targets;
}

bool Campaign::switchOver(const std::string& workload, const std::string& pod) {
  return h_.client()
      .mergePatch(kWorkloadResource, ns_, workload,
                  {{"metadata", {{"annotations", {{"singleton.dev/switchover-to", pod}}}}}})
      .ok();
}

bool Campaign::injectAgentFreezeOnMove(Workload& w, int index) {
  const auto leader = auditor_.currentLeader(w.name);
  if (!leader || leader->terminating) return false;
  const std::vector<std::string> targets = switchoverTargets(w.name);
  if (targets.empty()) return false;
  auto freeze = std::make_shared<AgentFreeze>();
  freeze->armed = true;
  const std::string lease = w.name + "-leader";
  {
    std::lock_guard lock(agent_freeze_mutex_);
    agent_freezes_[lease] = freeze;
  }
  if (!switchOver(w.name, pick(targets))) {
    std::lock_guard lock(agent_freeze_mutex_);
    agent_freezes_.erase(lease);
    return false;
  }
  w.busy = true;
  const auto frozen_for = hold(kAgentFreezeMinMs, kAgentFreezeMaxMs);
  active_.push_back({Kind::kAgentFreezeOnMove, index, Clock::now() + 1s,
                     [this, lease, freeze, index] {
                       {
                         std::lock_guard lock(agent_freeze_mutex_);
                         freeze->cancelled = true;
                         if (freeze->frozen_at) {
                           ::kill(freeze->pid, SIGCONT);
                           ++stats_[Kind::kAgentFreezeOnMove].hit;
                         }
                         agent_freezes_.erase(lease);
                       }
                       workloads_[static_cast<std::size_t>(index)].busy = false;
                     },
                     [this, freeze, frozen_for] {
                       std::lock_guard lock(agent_freeze_mutex_);
                       return freeze->frozen_at && Clock::now() - *freeze->frozen_at > frozen_for;
                     }});
  return true;
}

void Campaign::onLeaseVersion(const Json& lease) {
  const Json& meta = lease.value("metadata", Json::object());
  const std::string name = meta.value("name", "");
  std::string uid;
  if (meta.contains("annotations") && meta["annotations"].is_object()) {
    uid = meta["annotations"].value("singleton.dev/leader-uid", "");
  }
  std::lock_guard lock(agent_freeze_mutex_);
  std::string& last = lease_leader_uid_[name];
  const bool moved = !uid.empty() && uid != last;
  last = uid;
  auto it = agent_freezes_.find(name);
  if (!moved || it == agent_freezes_.end()) return;
  AgentFreeze& f = *it->second;
  if (!f.armed || f.cancelled) return;
  // The Lease names the new leader (the operator's compare-and-swap): freeze its agent now, as it starts.
  const auto pid = chaos::agentProcessOfPod(uid);
  if (!pid || ::kill(*pid, SIGSTOP) != 0) return;
  f.armed = false;
  f.pid = *pid;
  f.frozen_at = Clock::now();
}

bool Campaign::clientGoIdentity(const std::string& identity) {
  return identity.rfind("g" + std::to_string(kClientGoGroup) + "c" + std::to_string(kCandidatesPerGroup) + "r", 0) == 0;
}

void Campaign::clearApiFaults(ApiProxy& proxy) {
  proxy.holdRequests(nullptr);
  proxy.releaseHeldRequests();
  proxy.injectAnswers(nullptr, 0, ApiProxy::Answer::kConflict);
  proxy.disarmDrop();
  proxy.setWatchDelay(nullptr, 0ms);
  proxy.setDelay(nullptr, 0ms);
}

}  // namespace singleton::testing::chaos
