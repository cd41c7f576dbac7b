#include "support/leader_auditor.h"

#include <charconv>
#include <sstream>

namespace singleton::testing {

namespace {

using Json = nlohmann::json;

constexpr const char* kLabelWorkload = "singleton.dev/workload";
constexpr const char* kLabelRole = "singleton.dev/role";
constexpr const char* kAnnotationToken = "singleton.dev/fencing-token";
constexpr const char* kAnnotationTemplateHash = "singleton.dev/template-hash";
constexpr std::size_t kMaxViolations = 200;

std::string stringAt(const Json& object, const char* a, const char* b) {
  if (!object.is_object()) return "";
  auto i = object.find(a);
  if (i == object.end() || !i->is_object()) return "";
  auto j = i->find(b);
  return j != i->end() && j->is_string() ? j->get<std::string>() : "";
}

std::string workloadOf(const Json& pod) {
  const Json& meta = pod.value("metadata", Json::object());
  return stringAt(meta, "labels", kLabelWorkload);
}

std::optional<std::int64_t> parseToken(const std::string& text) {
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || value < 0) return std::nullopt;
  return value;
}

std::string describePod(const LeaderAuditor::PodView& p) {
  std::ostringstream out;
  out << p.name << " (uid " << p.uid.substr(0, 8) << ", rv " << p.resource_version << ", role "
      << (p.role.empty() ? "-" : p.role) << ", token " << p.token.value_or("-") << (p.ready ? ", ready" : ", not ready")
      << (p.terminating ? ", terminating" : "") << (p.phase.empty() ? "" : ", " + p.phase) << ")";
  return out.str();
}

}  // namespace

LeaderAuditor::PodView podView(const Json& pod) {
  LeaderAuditor::PodView v;
  const Json& meta = pod.value("metadata", Json::object());
  v.name = meta.value("name", "");
  v.uid = meta.value("uid", "");
  v.resource_version = meta.value("resourceVersion", "");
  v.role = stringAt(meta, "labels", kLabelRole);
  for (const Json& owner : meta.value("ownerReferences", Json::array())) {
    if (owner.value("controller", false) || v.owner_uid.empty()) v.owner_uid = owner.value("uid", "");
  }
  if (auto a = meta.find("annotations"); a != meta.end() && a->is_object()) {
    if (auto t = a->find(kAnnotationToken); t != a->end() && t->is_string()) v.token = t->get<std::string>();
  }
  v.template_hash = stringAt(meta, "annotations", kAnnotationTemplateHash);
  v.terminating = meta.contains("deletionTimestamp") && !meta["deletionTimestamp"].is_null();
  const Json& spec = pod.value("spec", Json::object());
  v.node = spec.value("nodeName", "");
  const Json& status = pod.value("status", Json::object());
  v.phase = status.value("phase", "");
  for (const Json& c : status.value("conditions", Json::array())) {
    if (c.value("type", "") == "Ready") v.ready = c.value("status", "") == "True";
  }
  return v;
}

LeaderAuditor::LeaderAuditor(std::shared_ptr<kube::Transport> transport, Options options)
    : options_(std::move(options)), client_(std::make_unique<kube::Client>(std::move(transport))) {
  watch::ReflectorOptions ro;
  ro.ns = options_.ns;
  ro.label_selector = kLabelWorkload;
  ro.backoff = util::BackoffPolicy{std::chrono::milliseconds(20), std::chrono::seconds(1), 2.0, 0.2};
  reflector_ = std::make_unique<watch::Reflector>(*client_, kube::kPods, ro, *this);
}

LeaderAuditor::LeaderAuditor(std::shared_ptr<kube::Transport> transport, const std::string& ns)
    : LeaderAuditor(std::move(transport), Options{ns, true, {}}) {}

LeaderAuditor::~LeaderAuditor() { stop(); }

bool LeaderAuditor::start(std::chrono::milliseconds timeout) {
  if (!thread_.joinable()) {
    thread_ = std::jthread([this](std::stop_token stop) { reflector_->run(stop); });
  }
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return synced_; });
}

void LeaderAuditor::stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

void LeaderAuditor::violation(const std::string& workload, const std::string& what) {
  if (state_.violations.size() < kMaxViolations) state_.violations.push_back(workload + ": " + what);
}

void LeaderAuditor::check(const std::string& workload, WorkloadState& w, const PodView* changed, SteadyTime at) {
  w.leaders.clear();
  for (const auto& [name, p] : w.pods) {
    if (p.leader()) w.leaders.insert(name);
  }
  if (w.leaders.size() <= 1) w.reported_leaders.clear();
  // Reported once per set of simultaneous leaders (later events on the same pods repeat nothing new).
  if (w.leaders.size() > 1 && w.leaders != w.reported_leaders) {
    w.reported_leaders = w.leaders;
    std::string what = "two pods labelled leader at once:";
    for (const auto& name : w.leaders) what += " " + describePod(w.pods[name]);
    if (changed != nullptr) what += " [after the event for " + changed->name + "]";
    violation(workload, what);
  }
  if (changed == nullptr) return;
  const PodView& p = *changed;
  if (!p.leader()) {
    if (p.token) violation(workload, "a pod not labelled leader carries a fencing token: " + describePod(p));
    return;
  }
  if (!p.token) {
    violation(workload, "a pod labelled leader has no fencing token: " + describePod(p));
    return;
  }
  const auto token = parseToken(*p.token);
  if (!token) {
    violation(workload, "unparseable fencing token: " + describePod(p));
    return;
  }
  // A new leadership: a different pod (UID) than the last leader, or the same pod with a different token, or the
  // same pod again after another pod led in between.
  const bool same_as_last =
      !w.leaderships.empty() && w.leaderships.back().uid == p.uid && w.leaderships.back().token == *token;
  if (same_as_last) return;
  const auto owner_max = w.max_token_by_owner.try_emplace(p.owner_uid, -1).first;
  if (*token <= owner_max->second) {
    std::ostringstream what;
    what << "fencing token did not increase: " << describePod(p) << " has token " << *token
         << " but the highest token seen so far in the workload object " << p.owner_uid.substr(0, 8) << " is "
         << owner_max->second;
    for (const auto& l : w.leaderships) {
      if (l.token == *token) what << " (held before by " << l.pod << " uid " << l.uid.substr(0, 8) << ")";
    }
    violation(workload, what.str());
  }
  owner_max->second = std::max(owner_max->second, *token);
  w.max_token = std::max(w.max_token, *token);
  w.leaderships.push_back({p.name, p.uid, *token, at, p.resource_version});
}

void LeaderAuditor::apply(const std::string& type, const std::string& workload, const PodView& pod, bool deleted,
                          SteadyTime at) {
  WorkloadState& w = state_.workloads[workload];
  if (deleted) {
    w.pods.erase(pod.name);
  } else {
    w.pods[pod.name] = pod;
  }
  ++state_.event_count;
  check(workload, w, deleted ? nullptr : &pod, at);
  PodEvent event{at, type, workload, pod};
  if (options_.listener) options_.listener(event, state_);
  if (options_.record_events) state_.events.push_back(std::move(event));
}

void LeaderAuditor::onReplace(std::vector<Json> objects, const std::string&) {
  const auto at = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    // A relist is one instant: apply the snapshot as the adds, changes and deletions it implies, then check.
    std::map<std::string, std::map<std::string, PodView>> next;
    for (const Json& object : objects) {
      const std::string workload = workloadOf(object);
      if (workload.empty()) continue;
      PodView v = podView(object);
      next[workload][v.name] = std::move(v);
    }
    for (auto& [workload, w] : state_.workloads) {
      for (auto it = w.pods.begin(); it != w.pods.end();) {
        if (!next[workload].count(it->first)) {
          PodView gone = it->second;
          ++it;
          apply("DELETED", workload, gone, true, at);
        } else {
          ++it;
        }
      }
    }
    for (auto& [workload, pods] : next) {
      for (auto& [name, v] : pods) {
        auto& current = state_.workloads[workload].pods;
        auto old = current.find(name);
        if (old != current.end() && old->second.resource_version == v.resource_version) continue;
        apply(old == current.end() ? "ADDED" : "MODIFIED", workload, v, false, at);
      }
    }
    synced_ = true;
  }
  changed_.notify_all();
}

void LeaderAuditor::onEvent(const watch::Event& event) {
  const auto at = std::chrono::steady_clock::now();
  const std::string workload = workloadOf(event.object);
  if (workload.empty()) return;
  const char* type = event.type == watch::EventType::kAdded      ? "ADDED"
                     : event.type == watch::EventType::kModified ? "MODIFIED"
                                                                 : "DELETED";
  {
    std::lock_guard lock(mutex_);
    apply(type, workload, podView(event.object), event.type == watch::EventType::kDeleted, at);
  }
  changed_.notify_all();
}

std::vector<std::string> LeaderAuditor::violations() const {
  std::lock_guard lock(mutex_);
  return state_.violations;
}

std::vector<LeaderAuditor::Leadership> LeaderAuditor::leaderships(const std::string& workload) const {
  std::lock_guard lock(mutex_);
  auto it = state_.workloads.find(workload);
  return it == state_.workloads.end() ? std::vector<Leadership>{} : it->second.leaderships;
}

std::set<std::string> LeaderAuditor::currentLeaders(const std::string& workload) const {
  std::lock_guard lock(mutex_);
  auto it = state_.workloads.find(workload);
  return it == state_.workloads.end() ? std::set<std::string>{} : it->second.leaders;
}

std::optional<LeaderAuditor::PodView> LeaderAuditor::currentLeader(const std::string& workload) const {
  std::lock_guard lock(mutex_);
  auto it = state_.workloads.find(workload);
  if (it == state_.workloads.end() || it->second.leaders.size() != 1) return std::nullopt;
  return it->second.pods.at(*it->second.leaders.begin());
}

std::optional<LeaderAuditor::PodView> LeaderAuditor::pod(const std::string& workload, const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = state_.workloads.find(workload);
  if (it == state_.workloads.end()) return std::nullopt;
  auto p = it->second.pods.find(name);
  if (p == it->second.pods.end()) return std::nullopt;
  return p->second;
}

std::vector<LeaderAuditor::PodEvent> LeaderAuditor::events(const std::string& workload) const {
  std::lock_guard lock(mutex_);
  if (workload.empty()) return state_.events;
  std::vector<PodEvent> out;
  for (const auto& e : state_.events) {
    if (e.workload == workload) out.push_back(e);
  }
  return out;
}

std::size_t LeaderAuditor::eventCount() const {
  std::lock_guard lock(mutex_);
  return state_.event_count;
}

bool LeaderAuditor::waitUntil(const std::function<bool(const State&)>& check, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return check(state_); });
}

std::optional<LeaderAuditor::Leadership> LeaderAuditor::waitForLeadership(const std::string& workload,
                                                                          std::size_t after,
                                                                          std::chrono::milliseconds timeout) const {
  std::optional<Leadership> found;
  waitUntil(
      [&](const State& s) {
        auto it = s.workloads.find(workload);
        if (it == s.workloads.end() || it->second.leaderships.size() <= after) return false;
        found = it->second.leaderships[after];
        return true;
      },
      timeout);
  return found;
}

std::string LeaderAuditor::describe(const std::string& workload) const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  out << "auditor view of workload " << workload << " (" << state_.event_count << " pod events in total)\n";
  auto it = state_.workloads.find(workload);
  if (it != state_.workloads.end()) {
    const auto origin =
        it->second.leaderships.empty() ? std::chrono::steady_clock::now() : it->second.leaderships.front().at;
    out << "  leaderships:";
    for (const auto& l : it->second.leaderships) {
      out << " " << l.pod << "@" << l.token << "(+"
          << std::chrono::duration_cast<std::chrono::milliseconds>(l.at - origin).count() << "ms)";
    }
    out << "\n  pods now:\n";
    for (const auto& [name, p] : it->second.pods) out << "    " << describePod(p) << "\n";
  }
  for (const auto& v : state_.violations) out << "  VIOLATION " << v << "\n";
  return out.str();
}

}  // namespace singleton::testing
