#include "support/lease_auditor.h"

#include <set>
#include <sstream>

namespace singleton::testing {

namespace {
using Json = nlohmann::json;
constexpr std::size_t kMaxViolations = 200;
}  // namespace

LeaseAuditor::LeaseAuditor(std::shared_ptr<kube::Transport> transport, std::string ns)
    : client_(std::make_unique<kube::Client>(std::move(transport))) {
  watch::ReflectorOptions ro;
  ro.ns = std::move(ns);
  ro.backoff = util::BackoffPolicy{std::chrono::milliseconds(20), std::chrono::seconds(1), 2.0, 0.2};
  reflector_ = std::make_unique<watch::Reflector>(*client_, kube::kLeases, ro, *this);
}

LeaseAuditor::~LeaseAuditor() { stop(); }

bool LeaseAuditor::start(std::chrono::milliseconds timeout) {
  if (!thread_.joinable()) {
    thread_ = std::jthread([this](std::stop_token stop) { reflector_->run(stop); });
  }
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return synced_; });
}

void LeaseAuditor::stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

std::vector<std::string> LeaseAuditor::violations() const {
  std::lock_guard lock(mutex_);
  return violations_;
}

LeaseAuditor::Figures LeaseAuditor::figures() const {
  std::lock_guard lock(mutex_);
  Figures f = figures_;
  f.leases = leases_.size();
  return f;
}

LeaseAuditor::Version LeaseAuditor::versionOf(const Json& lease) {
  Version v;
  const Json& meta = lease.value("metadata", Json::object());
  v.name = meta.value("name", "");
  v.uid = meta.value("uid", "");
  v.resource_version = meta.value("resourceVersion", "");
  v.key = v.name;
  for (const Json& ref : meta.value("ownerReferences", Json::array())) {
    if (ref.is_object() && ref.contains("uid") && ref["uid"].is_string()) {
      v.key = v.name + "@" + ref["uid"].get<std::string>();
      break;
    }
  }
  const Json& spec = lease.value("spec", Json::object());
  if (spec.contains("holderIdentity") && spec["holderIdentity"].is_string()) {
    v.holder = spec["holderIdentity"].get<std::string>();
  }
  if (spec.contains("leaseTransitions") && spec["leaseTransitions"].is_number_integer()) {
    v.token = spec["leaseTransitions"].get<std::int64_t>();
  }
  return v;
}

void LeaseAuditor::apply(const Version& v) {
  LeaseState& s = leases_[v.key];
  if (s.resource_version == v.resource_version && s.uid == v.uid) return;
  if (s.uid.empty() && s.max_token >= 0 && s.deleted_since_last_term) ++figures_.recreations;
  s.uid = v.uid;
  s.resource_version = v.resource_version;
  if (v.holder.empty()) return;
  if (v.holder == s.last_holder && v.token == s.last_token) return;  // the same term goes on
  ++figures_.terms;
  if (s.deleted_since_last_term) ++figures_.terms_after_recreation;
  if (v.token <= s.max_token && violations_.size() < kMaxViolations) {
    std::ostringstream out;
    out << v.key << ": the term of " << v.holder << " has token " << v.token << ", not above " << s.max_token
        << " (the last term: " << s.last_holder << " with " << s.last_token << ")"
        << (s.deleted_since_last_term ? ", on a re-created Lease" : "") << " at rv " << v.resource_version;
    violations_.push_back(out.str());
  }
  s.last_holder = v.holder;
  s.last_token = v.token;
  s.max_token = std::max(s.max_token, v.token);
  s.deleted_since_last_term = false;
}

void LeaseAuditor::removed(const std::string& key) {
  auto it = leases_.find(key);
  if (it == leases_.end() || it->second.uid.empty()) return;
  ++figures_.deletions;
  it->second.uid.clear();
  it->second.resource_version.clear();
  it->second.deleted_since_last_term = true;
}

void LeaseAuditor::onReplace(std::vector<Json> objects, const std::string&) {
  {
    std::lock_guard lock(mutex_);
    std::set<std::string> present;
    std::vector<Version> versions;
    for (const Json& object : objects) {
      versions.push_back(versionOf(object));
      present.insert(versions.back().key);
    }
    for (auto& [key, s] : leases_) {
      if (!present.contains(key)) removed(key);
    }
    for (const Version& v : versions) apply(v);
    synced_ = true;
  }
  changed_.notify_all();
}

void LeaseAuditor::onEvent(const watch::Event& event) {
  const Version v = versionOf(event.object);
  {
    std::lock_guard lock(mutex_);
    if (event.type == watch::EventType::kDeleted) {
      removed(v.key);
    } else {
      apply(v);
    }
  }
  changed_.notify_all();
  if (listener_ && event.type != watch::EventType::kDeleted) listener_(event.object);
}

}  // namespace singleton::testing
