// The campaign's run: set-up, the loop that injects and clears faults and measures recoveries, the final check.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

#include "chaos/campaign.h"
#include "support/elect_candidate.h"
#include "support/fenced_register.h"

namespace singleton::testing::chaos {

using Json = nlohmann::json;

Campaign::~Campaign() {
  // Whatever happens, leave nothing frozen or cut off.
  for (auto& a : active_) {
    try {
      a.clear();
    } catch (...) {
    }
  }
  for (const char* c : {"etcd", "kube-apiserver"}) {
    try {
      h_.cluster().signalComponent(c, SIGCONT);
    } catch (...) {
    }
  }
  for (int i = 0; i < h_.operatorCount(); ++i) {
    h_.signalOperator(i, SIGCONT);
    h_.operatorProxy(i).heal();
    clearApiFaults(h_.operatorApiProxy(i));
  }
  stopCandidates();
  monitor_stop_ = true;
  if (monitor_.joinable()) monitor_.join();
}

void Campaign::setUp() {
  auto config = kube::loadKubeconfig({h_.cluster().kubeconfigPath().string(), ""});
  if (!config.ok()) throw std::runtime_error("kubeconfig: " + config.error().describe());
  auto transport = kube::makeTransport(*config);
  if (!transport.ok()) throw std::runtime_error("transport: " + transport.error().describe());
  monitor_client_ = std::make_unique<kube::Client>(*transport);
  monitor_ = std::thread([this] { monitorLoop(); });
  lease_auditor_ = std::make_unique<LeaseAuditor>(h_.transport(), ns_);
  operator_lease_auditor_ = std::make_unique<LeaseAuditor>(h_.transport(), kOperatorNamespace);
  lease_auditor_->setListener([this](const Json& lease) { onLeaseVersion(lease); });
  if (!lease_auditor_->start() || !operator_lease_auditor_->start()) {
    throw std::runtime_error("the Lease auditors did not sync");
  }
  client_go_binary_ = chaos::clientGoExample(h_.cluster().binDir());
  if (!client_go_binary_) {
    std::cout << "[chaos] no " << (h_.cluster().binDir() / "leader-election-example").string()
              << ": the client-go candidate and its kinds are skipped" << std::endl;
  }
  fake_time_library_ = chaos::fakeTimeLibrary();
  if (!fake_time_library_) {
    std::cout << "[chaos] libfaketime is not installed (scripts/deps.sh): the clock faults are skipped" << std::endl;
  } else {
    std::cout << "[chaos] clock faults (libfaketime on CLOCK_REALTIME"
              << (chaos::clockRateLibrary() ? ", libsingleton-clock-rate on CLOCK_MONOTONIC at the same rate"
                                            : ", CLOCK_MONOTONIC real: libsingleton-clock-rate.so not built")
              << (chaos::addressSanitizerBuild() ? ", ASan: verify_asan_link_order=0" : "") << "): op-"
              << kFakeTimeReplica << " under FAKETIME=\"" << kFakeTimeOperator << "\", candidate g" << kFakeTimeGroup
              << "c" << kFakeTimeCandidate << " under FAKETIME=\"" << kFakeTimeCandidateSpec << "\"" << std::endl;
    // The harness started it on the real clocks.
    h_.signalOperator(kFakeTimeReplica, SIGTERM);
    if (!h_.waitOperatorExit(kFakeTimeReplica, 15s)) h_.signalOperator(kFakeTimeReplica, SIGKILL);
    h_.waitOperatorExit(kFakeTimeReplica, 5s);
    startOperator(kFakeTimeReplica);
  }

  const auto dir = h_.cluster().dir() / "chaos";
  std::filesystem::create_directories(dir);
  for (int i = 0; i < kWorkloadCount; ++i) {
    Workload w;
    w.name = "w" + std::string(i < 10 ? "0" : "") + std::to_string(i);
    w.replicas = i % 5 == 0 ? 3 : 2;
    if (isAgentWorkload(i)) {
      // Fresh per run (a kept cluster directory must not mix an earlier run's windows in).
      const auto activity = dir / (ns_ + "-activity-" + w.name);
      std::filesystem::remove_all(activity);
      std::filesystem::create_directories(activity);
      std::filesystem::permissions(activity, std::filesystem::perms::all);
      w.tail = std::make_unique<chaos::ActivityTail>(activity);
    }
    auto r = h_.createWorkload(objectOf(w));
    if (!r.ok()) throw std::runtime_error("create workload " + w.name + ": " + r.error().describe());
    workloads_.push_back(std::move(w));
  }
  for (int g = 0; g < kGroupCount; ++g) {
    Group group;
    group.lease = ns_ + "/chaos-g" + std::to_string(g);
    group.store = std::make_unique<FencedStore>(/*fenced=*/true);
    group.reader = std::make_unique<StoreReader>(group.store->port());
    group.dir = dir / ("g" + std::to_string(g));
    std::filesystem::create_directories(group.dir);
    groups_.push_back(std::move(group));
    const int candidates = kCandidatesPerGroup + (g == kClientGoGroup && client_go_binary_ ? 1 : 0);
    for (int c = 0; c < candidates; ++c) {
      auto cand = std::make_unique<Candidate>();
      cand->group = g;
      cand->index = c;
      cand->client_go = c == kCandidatesPerGroup;
      if (fake_time_library_ && g == kFakeTimeGroup && c == kFakeTimeCandidate) cand->faketime = kFakeTimeCandidateSpec;
      const std::string name = "g" + std::to_string(g) + "c" + std::to_string(c);
      cand->api_proxy = std::make_unique<ApiProxy>(h_.cluster().apiserverPort());
      const auto api_kubeconfig = dir / ("kubeconfig-api-" + name);
      cand->api_proxy->writeKubeconfig(h_.cluster().adminToken(), api_kubeconfig);
      cand->api_proxy->authorizeAs(h_.cluster().adminToken());  // client-go sends no token over plain http
      cand->proxy = std::make_unique<TcpProxy>(cand->api_proxy->port());
      cand->kubeconfig = dir / ("kubeconfig-" + name);
      cand->proxy->writeKubeconfig(api_kubeconfig, cand->kubeconfig);
      candidates_.push_back(std::move(cand));
    }
  }
  for (auto& c : candidates_) startCandidate(*c);
}

bool Campaign::waitHealthy(std::chrono::milliseconds timeout) {
  const auto since = Clock::now();
  std::string unhealthy;
  const bool healthy = eventually(
      [&] {
        observe();
        checkActivity();
        unhealthy.clear();
        if (!operatorsHealthy(since - 1h)) unhealthy += " operators";
        for (int g = 0; g < kGroupCount; ++g) {
          if (!groupHealthy(g, since - 1h)) unhealthy += " group" + std::to_string(g);
        }
        const auto ok = workloadsHealthy();
        for (std::size_t i = 0; i < ok.size(); ++i) {
          if (!ok[i]) unhealthy += " " + workloads_[i].name;
        }
        return unhealthy.empty();
      },
      timeout, 100ms);
  if (!healthy) std::cout << "[chaos] not healthy:" << unhealthy << std::endl;
  return healthy;
}

void Campaign::run(int faults, std::optional<std::chrono::seconds> cap) {
  const auto started = Clock::now();
  auto next = started;
  while (injected_ < faults && (!cap || Clock::now() - started < *cap)) {
    tick();
    if (Clock::now() >= next) {
      injectOne();
      next = Clock::now() + std::chrono::milliseconds(std::uniform_int_distribution<int>(500, 1500)(rng_));
    }
    std::this_thread::sleep_for(50ms);
  }
  while (!active_.empty()) {
    tick();
    std::this_thread::sleep_for(50ms);
  }
  last_cleared_ = Clock::now();
  campaign_duration_ = last_cleared_ - started;
  // The last faults' recoveries (each within its bound).
  while (!pending_.empty()) {
    tick();
    std::this_thread::sleep_for(50ms);
  }
}

Campaign::Final Campaign::finalCheck(
    const std::function<bool(const std::string&, std::chrono::milliseconds)>& steady_leader) {
  Final out;
  const auto since = last_cleared_;
  const auto deadline = since + kFinalBound;
  auto remaining = [&] {
    return std::max(0ms, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  };
  ensureOperatorsRunning();
  bool ops = eventually(
      [&] {
        observe();
        return operatorsHealthy(since);
      },
      remaining(), 100ms);
  if (!ops) out.failures.push_back("no operator replica holds and renews the operators' Lease");
  for (int g = 0; g < kGroupCount; ++g) {
    if (!eventually(
            [&] {
              observe();
              return groupHealthy(g, since);
            },
            remaining(), 100ms)) {
      out.failures.push_back("elect group " + std::to_string(g) + " has no leader writing to its store (last value '" +
                             groups_[g].value + "')");
    }
  }
  for (const auto& w : workloads_) {
    if (steady_leader(w.name, remaining())) {
      if (w.tail && !eventually(
                        [&] {
                          checkActivity();
                          return leaderCommandRunning(w);
                        },
                        remaining(), 100ms)) {
        out.failures.push_back("agent workload " + w.name + " has a leader but its COMMAND is not running");
        failed_workloads_.insert(w.name);
      }
      continue;
    }
    // Only a workload with a Ready replica must have a leader.
    bool any_ready = false;
    auditor_.waitUntil(
        [&](const LeaderAuditor::State& s) {
          auto it = s.workloads.find(w.name);
          if (it == s.workloads.end()) return true;
          for (const auto& [name, p] : it->second.pods) any_ready = any_ready || (p.ready && !p.terminating);
          return true;
        },
        0ms);
    if (any_ready) {
      out.failures.push_back("workload " + w.name + " has a Ready replica but no steady leader");
      failed_workloads_.insert(w.name);
    } else {
      ++no_ready_replica_;
    }
  }
  if (out.failures.empty()) out.recovered_ms = ms(Clock::now() - since);
  return out;
}

std::vector<Campaign::GroupHistory> Campaign::checkHistories() {
  stopCandidates();
  checkActivity();
  std::vector<Term> client_go_terms;
  {
    std::lock_guard lock(monitor_mutex_);
    if (client_go_term_) client_go_terms_.push_back(*client_go_term_);
    client_go_term_.reset();
    client_go_terms = client_go_terms_;
  }
  std::vector<GroupHistory> out;
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    const Group& g = groups_[gi];
    std::vector<std::string> lines;
    for (const auto& entry : std::filesystem::directory_iterator(g.dir)) {
      if (entry.path().extension() != ".history") continue;
      std::ifstream in(entry.path());
      for (std::string line; std::getline(in, line);) lines.push_back(line);
    }
    const auto ops = fenced::parseHistory(lines);
    if (static_cast<int>(gi) == kClientGoGroup) checkClientGoTerms(ops, client_go_terms);
    checkCommandWindows(static_cast<int>(gi), ops);
    GroupHistory gh;
    gh.operations = ops.size();
    for (const auto& op : ops) {
      if (!op.is_write) continue;
      ++gh.writes;
      gh.accepted += op.result == fenced::Operation::Result::kOk;
      gh.refused += op.result == fenced::Operation::Result::kRefused;
      gh.unknown += op.result == fenced::Operation::Result::kUnknown;
    }
    const auto started = Clock::now();
    const auto check = fenced::checkLinearizable(ops);
    gh.linearizable = check.linearizable;
    gh.stuck = check.first_stuck;
    gh.stale = fenced::acceptedStaleWrites(ops);
    gh.check_ms = ms(Clock::now() - started);
    out.push_back(gh);
  }
  return out;
}

void Campaign::checkClientGoTerms(const std::vector<fenced::Operation>& ops, const std::vector<Term>& terms) {
  const auto ns = [](Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  };
  for (const auto& op : ops) {
    if (!op.is_write) continue;
    const std::string writer = op.value.substr(0, op.value.find('/'));
    for (const Term& t : terms) {
      if (op.invoke_ns <= ns(t.from) || op.invoke_ns >= ns(t.to)) continue;
      if (paused_writers_.contains(writer)) {
        ++paused_writes_in_client_go_terms_;
      } else if (client_go_overlaps_.size() < 50) {
        client_go_overlaps_.push_back(writer + " wrote " + op.value + " (token " + std::to_string(op.token) + ") " +
                                      std::to_string((op.invoke_ns - ns(t.from)) / 1000000) +
                                      " ms into a term of client-go's candidate (" + std::to_string(ms(t.to - t.from)) +
                                      " ms long as polled)");
      }
    }
  }
}

void Campaign::checkCommandWindows(int group, const std::vector<fenced::Operation>& ops) {
  // A COMMAND's window: from its first write's invocation to its last's (a write cut short by the COMMAND's stop has
  // no completion). Writers (one per elector incarnation) whose elector was frozen in its term are left out: their
  // COMMAND runs on by design, and only the fence answers it.
  struct Window {
    std::int64_t first = std::numeric_limits<std::int64_t>::max(), last = 0;
  };
  std::map<std::string, Window> windows;
  for (const auto& op : ops) {
    if (!op.is_write) continue;
    const std::string writer = op.value.substr(0, op.value.find('/'));
    if (paused_writers_.contains(writer)) continue;
    Window& w = windows[writer];
    w.first = std::min(w.first, op.invoke_ns);
    w.last = std::max(w.last, op.invoke_ns);
  }
  std::vector<std::pair<std::string, Window>> ordered(windows.begin(), windows.end());
  std::sort(ordered.begin(), ordered.end(),
            [](const auto& a, const auto& b) { return a.second.first < b.second.first; });
  command_windows_ += ordered.size();
  for (std::size_t i = 1; i < ordered.size(); ++i) {
    const auto& [before, a] = ordered[i - 1];
    const auto& [after, b] = ordered[i];
    if (b.first <= a.last && command_overlaps_.size() < 50) {
      command_overlaps_.push_back("group " + std::to_string(group) + ": " + after + "'s COMMAND wrote " +
                                  std::to_string((a.last - b.first) / 1000000) + " ms before " + before +
                                  "'s last write");
    }
  }
}

std::size_t Campaign::clientGoTerms() const {
  std::lock_guard lock(monitor_mutex_);
  return client_go_terms_.size() + (client_go_term_ ? 1 : 0);
}

std::vector<std::string> Campaign::leaseViolations() const {
  std::vector<std::string> out;
  for (const auto* auditor : {lease_auditor_.get(), operator_lease_auditor_.get()}) {
    if (auditor == nullptr) continue;
    for (auto& v : auditor->violations()) out.push_back(std::move(v));
  }
  return out;
}

LeaseAuditor::Figures Campaign::leaseFigures() const {
  LeaseAuditor::Figures sum;
  for (const auto* auditor : {lease_auditor_.get(), operator_lease_auditor_.get()}) {
    if (auditor == nullptr) continue;
    const auto f = auditor->figures();
    sum.leases += f.leases;
    sum.terms += f.terms;
    sum.deletions += f.deletions;
    sum.recreations += f.recreations;
    sum.terms_after_recreation += f.terms_after_recreation;
  }
  return sum;
}

std::size_t Campaign::activityWindows() const {
  std::size_t n = 0;
  for (const auto& w : workloads_) {
    n += w.tail ? w.tail->windowCount() : 0;
    for (const auto& t : w.retired_tails) n += t->windowCount();
  }
  return n;
}

void Campaign::tick() {
  const auto now = Clock::now();
  for (std::size_t i = 0; i < active_.size();) {
    const bool ready = !active_[i].ready_to_clear || now > active_[i].clear_at + kClearWait ||
                       (active_[i].clear_at <= now && active_[i].ready_to_clear());
    if (active_[i].clear_at <= now && ready) {
      Active a = std::move(active_[i]);
      active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(i));
      try {
        a.clear();
      } catch (const std::exception& e) {
        injection_errors_.push_back(std::string(info(a.kind).name) + " (clearing): " + e.what());
      }
      pending_.push_back({a.kind, a.target, Clock::now()});
    } else {
      ++i;
    }
  }
  checkProcesses();
  checkActivity();
  observe();
  if (pending_.empty()) return;
  const auto workloads = workloadsHealthy();
  const bool all_workloads = std::all_of(workloads.begin(), workloads.end(), [](bool b) { return b; });
  for (std::size_t i = 0; i < pending_.size();) {
    const Pending& p = pending_[i];
    bool healthy = false;
    switch (info(p.kind).scope) {
      case Scope::kOperators:
        healthy = operatorsHealthy(p.cleared);
        break;
      case Scope::kGroup:
        healthy = groupHealthy(p.target, p.cleared);
        break;
      case Scope::kWorkload: {
        // An agent workload's COMMAND must have beaten since the fault: a killed one's last beats are recent too.
        const Workload& w = workloads_[static_cast<std::size_t>(p.target)];
        healthy = workloads[static_cast<std::size_t>(p.target)] && (!w.tail || leaderCommandRunning(w, p.cleared));
        break;
      }
      case Scope::kControlPlane:
        healthy = operatorsHealthy(p.cleared);
        for (int g = 0; g < kGroupCount; ++g) healthy = healthy && groupHealthy(g, p.cleared);
        break;
      case Scope::kAllWorkloads:
        healthy = all_workloads;
        break;
    }
    const auto took = Clock::now() - p.cleared;
    KindStats& s = stats_[p.kind];
    if (healthy) {
      ++s.recovered;
      s.worst_ms = std::max(s.worst_ms, ms(took));
      s.total_ms += ms(took);
    } else if (took > kRecoveryBound) {
      ++s.unrecovered;
    } else {
      ++i;
      continue;
    }
    pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

std::chrono::milliseconds Campaign::hold(int lo_ms, int hi_ms) {
  return std::chrono::milliseconds(std::uniform_int_distribution<int>(lo_ms, hi_ms)(rng_));
}

bool Campaign::activeOf(const std::function<bool(const Active&)>& match) const {
  return std::any_of(active_.begin(), active_.end(), match);
}

bool Campaign::drawn(const KindInfo& kind) {
  // CHAOS_KINDS: a comma-separated list of parts of kind names; only those kinds are drawn.
  static const std::vector<std::string> only = [] {
    std::vector<std::string> parts;
    const char* list = std::getenv("CHAOS_KINDS");
    std::stringstream in(list != nullptr ? list : "");
    for (std::string part; std::getline(in, part, ',');) {
      if (!part.empty()) parts.push_back(part);
    }
    return parts;
  }();
  return only.empty() || std::any_of(only.begin(), only.end(), [&](const std::string& part) {
           return std::string_view(kind.name).find(part) != std::string_view::npos;
         });
}

void Campaign::injectOne() {
  int total = 0;
  for (const auto& k : kKinds) total += drawn(k) ? k.weight : 0;
  if (total == 0) throw std::runtime_error("CHAOS_KINDS matches no fault kind");
  for (int attempt = 0; attempt < 20; ++attempt) {
    int roll = std::uniform_int_distribution<int>(0, total - 1)(rng_);
    const KindInfo* chosen = &kKinds[0];
    for (const auto& k : kKinds) {
      if (!drawn(k)) continue;
      if (roll < k.weight) {
        chosen = &k;
        break;
      }
      roll -= k.weight;
    }
    bool done = false;
    try {
      done = tryInject(chosen->kind);
    } catch (const std::exception& e) {
      injection_errors_.push_back(std::string(chosen->name) + ": " + e.what());
    }
    if (done) {
      ++injected_;
      ++stats_[chosen->kind].injected;
      max_concurrent_ = std::max(max_concurrent_, static_cast<int>(active_.size()));
      return;
    }
  }
  ++skipped_;
}

void Campaign::addActive(Kind kind, int target, std::chrono::milliseconds how_long, std::function<void()> clear) {
  active_.push_back({kind, target, Clock::now() + how_long, std::move(clear), nullptr});
}

std::vector<std::string> Campaign::heldRequestOutcomes() {
  std::vector<std::string> out;
  for (int i = 0; i < h_.operatorCount(); ++i) {
    for (const auto& r : h_.operatorApiProxy(i).held()) {
      std::ostringstream line;
      line << "op-" << i << ": " << r.method << " " << r.path << ": held "
           << (r.released_at ? std::to_string(ms(*r.released_at - r.held_at)) + " ms" : std::string("(not released)"))
           << (r.client_gone ? " (its sender had closed the connection)" : "") << ", the apiserver answered "
           << (r.status ? std::to_string(r.status) : std::string("nothing"));
      out.push_back(line.str());
    }
  }
  return out;
}

}  // namespace singleton::testing::chaos
