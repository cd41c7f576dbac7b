#include "cli/singleton-agent/agent.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "election/timings.h"
#include "util/duration.h"
#include "util/log.h"

namespace singleton::agent {

using Json = nlohmann::json;
using election::HandoffView;
using util::Millis;
using util::MonoTime;

namespace {
const log::Logger kLog("agent");
}  // namespace

class Agent::LeaseHandler final : public watch::Handler {
 public:
  LeaseHandler(Agent& agent, std::string name) : agent_(agent), name_(std::move(name)) {}
  void onReplace(std::vector<Json> objects, const std::string&) override {
    std::optional<Json> found;
    for (auto& o : objects) {
      if (o.value("/metadata/name"_json_pointer, std::string()) == name_) found = std::move(o);
    }
    agent_.publishWatched(std::move(found));
  }
  void onEvent(const watch::Event& event) override {
    if (event.object.value("/metadata/name"_json_pointer, std::string()) != name_) return;
    agent_.publishWatched(event.type == watch::EventType::kDeleted ? std::nullopt : std::optional<Json>(event.object));
  }

 private:
  Agent& agent_;
  std::string name_;
};

Agent::Agent(cli::AgentOptions options, kube::Client& client, const util::Clock& clock,
             std::unique_ptr<Command> command, EventPrinter& printer)
    : options_(std::move(options)),
      ns_(options_.pod_namespace),
      lease_name_(options_.leaseName()),
      client_(client),
      clock_(clock),
      command_(std::move(command)),
      printer_(printer),
      board_(options_.role_dir, printer, clock),
      handler_(std::make_unique<LeaseHandler>(*this, lease_name_)),
      grace_(options_.grace_period),
      ack_backoff_({Millis(100), Millis(5000), 2.0, 0.2}) {
  board_.set(false, 0);
}

Agent::~Agent() = default;

watch::Handler& Agent::leaseHandler() { return *handler_; }

void Agent::publishWatched(std::optional<Json> lease) {
  {
    std::lock_guard guard(mutex_);
    watched_ = std::move(lease);
    watch_synced_ = true;
    ++watch_seq_;
  }
  cv_.notify_all();
}

void Agent::signal() {
  int count = 0;
  {
    std::lock_guard guard(mutex_);
    count = ++signals_;
  }
  if (count > 1) leave_now_.request_stop();
  cv_.notify_all();
}

bool Agent::wantsConfirmations() const {
  std::lock_guard guard(mutex_);
  return want_confirm_;
}

bool Agent::wantsConfirmationNow() const {
  std::lock_guard guard(mutex_);
  return confirm_now_;
}

bool Agent::confirmOnce() {
  Get get;
  {
    std::lock_guard guard(mutex_);
    confirm_now_ = false;
    get.after_watch_seq = watch_seq_;
    get_in_flight_after_ = watch_seq_;
    get.sent = clock_.now();
  }
  auto lease = client_.get(kube::kLeases, ns_, lease_name_);
  if (lease.ok()) {
    get.ok = true;
    get.view = election::parseHandoff(*lease);
    kLog.debug("confirmation GET", {.object = {.ns = ns_, .name = lease_name_},
                                    .values = {{"holder", get.view.holder}, {"token", get.view.token}}});
  } else {
    get.not_found = lease.error().code == util::ErrorCode::kNotFound;
    get.ok = get.not_found;  // an answer: the Lease is gone
    get.error = lease.error().message;
    if (!get.ok)
      kLog.warn("confirming the lease failed", {.err = get.error, .object = {.ns = ns_, .name = lease_name_}});
  }
  const bool ok = get.ok;
  {
    std::lock_guard guard(mutex_);
    last_get_ = std::move(get);
    get_in_flight_after_.reset();
    ++get_seq_;
  }
  cv_.notify_all();
  return ok;
}

// While wanted, one GET every renew-interval from the previous send (sooner after a failure, with backoff), and one
// at once when asked.
void Agent::confirmLoop(std::stop_token stop) {
  util::Backoff backoff({Millis(100), options_.renew_interval, 2.0, 0.2});
  std::unique_lock lock(mutex_);
  while (!stop.stop_requested()) {
    cv_.wait(lock, stop, [&] { return want_confirm_ || confirm_now_; });
    if (stop.stop_requested()) break;
    lock.unlock();
    const MonoTime sent = clock_.now();
    const bool ok = confirmOnce();
    const MonoTime next = ok ? sent + options_.renew_interval : clock_.now() + backoff.next();
    if (ok) backoff.reset();
    lock.lock();
    clock_.waitUntil(lock, cv_, next, stop, [&] { return confirm_now_ || !want_confirm_; });
  }
}

MonoTime Agent::wakeAt() const {
  MonoTime wake = clock_.now() + Millis(command_ && command_->running() ? 100 : 200);  // COMMAND's exit is polled
  if (leading_) wake = std::min(wake, confirmed_sent_ + options_.renew_deadline);
  if (next_ack_ > MonoTime{}) wake = std::min(wake, next_ack_);
  if (draining_) wake = std::min(wake, drain_until_);
  return wake;
}

void Agent::stopLeading(const char* reason) {
  if (!leading_) return;
  leading_ = false;
  {
    std::lock_guard guard(mutex_);
    want_confirm_ = false;
  }
  if (command_ && command_->running()) {
    const MonoTime t = clock_.now();
    const long pid = command_->pid();
    kLog.info("stopping command: SIGTERM, SIGKILL after the grace period",
              {.object = {.ns = ns_, .name = lease_name_},
               .values = {{"pid", pid}, {"reason", reason}, {"grace_period", util::formatDuration(grace_)}}});
    const int status = command_->stop(grace_);
    const auto took = std::chrono::duration_cast<Millis>(clock_.now() - t);
    kLog.info("command stopped",
              {.object = {.ns = ns_, .name = lease_name_}, .values = {{"status", status}, {"took_ms", took.count()}}});
    printer_.print("stopped_command",
                   {{"token", token_}, {"status", status}, {"reason", reason}, {"ms", took.count()}});
  }
  board_.set(false, token_);
}

// Checks the safety bound against the Lease's own duration, the first time the Lease shows one.
std::optional<int> Agent::checkTimings(const HandoffView& view) {
  if (timings_checked_ || view.lease_duration_seconds <= 0) return std::nullopt;
  const Millis lease_duration(static_cast<long long>(view.lease_duration_seconds) * 1000);
  const bool has_command = command_ != nullptr;
  kill_wait_ = election::killWait(lease_duration, options_.renew_deadline);
  if (!options_.grace_period_set) grace_ = election::defaultGracePeriod(lease_duration, options_.renew_deadline);
  auto s = election::checkAgentTimings(lease_duration, options_.renew_deadline,
                                       has_command ? grace_ + kill_wait_ : Millis(0));
  if (!s.ok() || (has_command && grace_ < Millis(0))) {
    const std::string message = "lease " + ns_ + "/" + lease_name_ + ": " +
                                (s.ok() ? std::string("renew deadline leaves no grace period") : s.error().message) +
                                (has_command ? " (stop bound = grace period " + util::formatDuration(grace_) +
                                                   " + reap wait " + util::formatDuration(kill_wait_) + ")"
                                             : std::string());
    std::fprintf(stderr, "singleton-agent: %s\n", message.c_str());
    return 2;
  }
  timings_checked_ = true;
  kLog.info("timings", {.object = {.ns = ns_, .name = lease_name_},
                        .values = {{"lease_duration", util::formatDuration(lease_duration)},
                                   {"renew_deadline", util::formatDuration(options_.renew_deadline)},
                                   {"grace_period", util::formatDuration(grace_)},
                                   {"reap_wait", util::formatDuration(kill_wait_)}}});
  return std::nullopt;
}

bool Agent::startLeading(long long token) {
  token_ = token;
  leading_ = true;
  board_.setReady(true, "");
  if (command_) {
    auto started = command_->start({{"SINGLETON_FENCING_TOKEN", std::to_string(token)},
                                    {"SINGLETON_ROLE", "leader"},
                                    {"SINGLETON_WORKLOAD", options_.workload},
                                    {"POD_NAME", options_.pod_name}});
    if (!started.ok()) {
      kLog.error("cannot start the command",
                 {.err = started.error().message, .object = {.ns = ns_, .name = lease_name_}});
      leading_ = false;
      return false;
    }
    kLog.info("started command",
              {.object = {.ns = ns_, .name = lease_name_}, .values = {{"pid", command_->pid()}, {"token", token}}});
    printer_.print("started_command", {{"token", token}, {"pid", command_->pid()}});
  }
  board_.set(true, token);
  return true;
}

// The hand-off away from this pod: COMMAND is not running (it runs only while leading), so acknowledge, as a CAS on
// the version `view` was read from.
bool Agent::acknowledge(const HandoffView& view, MonoTime now) {
  auto patched =
      client_.mergePatch(kube::kLeases, ns_, lease_name_, election::ackMergePatch(view, election::AckedBy::kAgent));
  if (patched.ok()) {
    kLog.info("acknowledged the hand-off",
              {.object = {.ns = ns_, .name = lease_name_}, .values = {{"to", view.holder}, {"token", view.token}}});
    printer_.print("acked_handoff", {{"token", view.token}, {"to", view.holder}});
    next_ack_ = now + Millis(500);  // the watch brings the acknowledged version meanwhile
    ack_backoff_.reset();
    return true;
  }
  if (patched.error().code == util::ErrorCode::kConflict) {
    // The watch brings the newer version, and the retry goes out at once with it (decide() clears next_ack_ on news);
    // until then, back off, so a lagging watch does not turn into a stream of refused patches.
    kLog.info("ack conflicted; waiting for the newer version", {.object = {.ns = ns_, .name = lease_name_}});
    next_ack_ = now + ack_backoff_.next();
  } else {
    kLog.warn("ack failed", {.err = patched.error().message, .object = {.ns = ns_, .name = lease_name_}});
    next_ack_ = now + ack_backoff_.next();
  }
  return false;
}

std::optional<int> Agent::decide() {
  std::optional<Json> watched;
  bool watch_synced = false;
  std::optional<Get> get;
  bool new_watch = false;
  bool new_get = false;
  std::uint64_t watch_seq = 0;
  bool fresh_get_in_flight = false;
  int signals = 0;
  {
    std::lock_guard guard(mutex_);
    new_watch = watch_seq_ != seen_watch_;
    new_get = get_seq_ != seen_get_;
    seen_watch_ = watch_seq_;
    seen_get_ = get_seq_;
    watched = watched_;
    watch_synced = watch_synced_;
    watch_seq = watch_seq_;
    get = last_get_;
    fresh_get_in_flight = get_in_flight_after_ == watch_seq_;
    signals = signals_;
  }
  const MonoTime now = clock_.now();
  const std::string& pod = options_.pod_name;
  const std::string& uid = options_.pod_uid;

  if (signals > 0 && !draining_) {
    // Pod deletion: COMMAND stops first. Then, if this pod holds the Lease, wait a little for the operator's move
    // (which names this pod as the one to stop first) and acknowledge it, so the successor need not wait for the
    // operator's own evidence.
    stopLeading("signal");
    draining_ = true;
    drain_until_ = now + std::min(options_.renew_deadline, Millis(5000));
    std::lock_guard guard(mutex_);
    want_confirm_ = false;
  }

  if (command_ && command_->running()) {
    if (auto status = command_->poll()) {
      kLog.warn("command exited by itself; exiting with it",
                {.object = {.ns = ns_, .name = lease_name_}, .values = {{"status", *status}}});
      printer_.print("command_exited", {{"token", token_}, {"status", *status}});
      leading_ = false;
      board_.set(false, token_);
      return *status;
    }
  }

  const HandoffView wview = watched ? election::parseHandoff(*watched) : HandoffView{};
  const bool get_answered = get && get->ok && !get->not_found;
  for (const HandoffView* v :
       std::initializer_list<const HandoffView*>{watched ? &wview : nullptr, get_answered ? &get->view : nullptr}) {
    if (v == nullptr) continue;
    if (auto code = checkTimings(*v)) {
      stopLeading("bad timings");
      return code;
    }
  }
  auto mine = [&](const HandoffView& v) { return election::mayBeActive(v, pod, uid) && v.token == token_; };

  if (leading_) {
    if (new_get && get_answered && mine(get->view)) confirmed_sent_ = std::max(confirmed_sent_, get->sent);
    const bool moved_watch = new_watch && watch_synced && !mine(wview);
    const bool moved_get = new_get && get->ok && (get->not_found || !mine(get->view));
    if (moved_watch || moved_get) {
      const HandoffView& v = moved_get ? get->view : wview;
      kLog.info("the lease no longer lets this pod lead",
                {.object = {.ns = ns_, .name = lease_name_},
                 .values = {{"pod", pod},
                            {"token", token_},
                            {"holder", v.holder},
                            {"holder_token", v.token},
                            {"handoff", v.complete ? "complete" : "pending"}}});
      stopLeading(moved_get ? "lease moved (confirmation)" : "lease moved (watch)");
    } else if (now >= confirmed_sent_ + options_.renew_deadline) {
      kLog.warn("could not confirm the lease within the renew deadline; stepping down",
                {.object = {.ns = ns_, .name = lease_name_},
                 .values = {{"renew_deadline", util::formatDuration(options_.renew_deadline)}}});
      board_.setReady(false, "no confirmation within renew-deadline");
      stopLeading("self-demoted");
      printer_.print("self_demoted", {{"token", token_}});
    }
  }

  bool acked_now = false;
  if (!leading_) {
    // A pod that is not the holder any more is an ordinary standby again: ready.
    if (watch_synced && wview.holder != pod) board_.setReady(true, "");
    const bool candidate = !draining_ && watch_synced && election::mayBeActive(wview, pod, uid);
    bool ask_now = false;
    if (candidate && !timings_checked_ && !warned_no_duration_) {
      warned_no_duration_ = true;
      kLog.warn("the lease has no spec.leaseDurationSeconds: the agent cannot check its timings and will not start",
                {.object = {.ns = ns_, .name = lease_name_}});
    }
    if (candidate && timings_checked_) {
      // Confirmed by a GET sent after the watch reported its latest change, recently enough, which agrees with the
      // watch (same token). A GET sent before that change says nothing about it, however recent.
      const bool fresh = get && get->after_watch_seq == watch_seq;
      const bool confirmed = fresh && get_answered && election::mayBeActive(get->view, pod, uid) &&
                             get->view.token == wview.token && now < get->sent + options_.renew_deadline;
      if (confirmed) {
        confirmed_sent_ = get->sent;
        if (!startLeading(wview.token)) return 127;
      } else if (!fresh_get_in_flight && (!fresh || (get_answered && now >= get->sent + options_.renew_deadline))) {
        ask_now = true;  // one more GET, now (not at the next interval)
      }
    }
    {
      std::lock_guard guard(mutex_);
      want_confirm_ = leading_ || candidate;
      if (ask_now) confirm_now_ = true;
    }
    cv_.notify_all();
    if (!leading_) board_.set(false, wview.token);

    const bool must_ack = watch_synced && election::mustAck(wview, pod, uid);
    if (new_watch) next_ack_ = {};  // a new version: decide on it at once
    if (must_ack && now >= next_ack_) {
      acked_now = acknowledge(wview, now);
    } else if (!must_ack) {
      next_ack_ = {};
    }
  }
  if (leading_ && new_watch && watch_synced && mine(wview)) board_.set(true, token_);
  if (draining_) {
    const bool pending = watch_synced && election::mustAck(wview, pod, uid);
    const bool still_ours = watch_synced && wview.holder == pod && wview.holder_uid == uid;
    if (acked_now || (!pending && !still_ours)) return 0;
    if (now >= drain_until_) {
      kLog.info("no hand-off to acknowledge; leaving",
                {.object = {.ns = ns_, .name = lease_name_}, .values = {{"pod", pod}}});
      return 0;
    }
  }
  return std::nullopt;
}

int Agent::run(std::stop_token stop) {
  std::stop_callback forward(stop, [this] { leave_now_.request_stop(); });
  const std::stop_token leave = leave_now_.get_token();

  watch::ReflectorOptions reflector_options;
  reflector_options.ns = ns_;
  reflector_options.field_selector = "metadata.name=" + lease_name_;
  reflector_options.transform = [](Json& o) {
    if (o.contains("metadata") && o["metadata"].is_object()) o["metadata"].erase("managedFields");
  };
  watch::Reflector reflector(client_, kube::kLeases, reflector_options, *handler_, clock_);
  std::jthread watcher([&](std::stop_token s) { reflector.run(s); });
  std::jthread confirmer([&](std::stop_token s) { confirmLoop(s); });

  std::optional<int> exit_status;
  while (!leave.stop_requested()) {
    {
      const MonoTime wake = wakeAt();
      std::unique_lock lock(mutex_);
      clock_.waitUntil(lock, cv_, wake, leave, [&] {
        return watch_seq_ != seen_watch_ || get_seq_ != seen_get_ || (signals_ > 0 && !draining_);
      });
    }
    if (leave.stop_requested()) break;
    if ((exit_status = decide())) break;
  }

  // Leaving: COMMAND first (bounded; already done when signalled), then the threads.
  bool signalled = false;
  {
    std::lock_guard guard(mutex_);
    signalled = signals_ > 0;
  }
  stopLeading(signalled ? "signal" : "exit");
  confirmer.request_stop();
  watcher.request_stop();
  cv_.notify_all();
  confirmer.join();
  watcher.join();
  if (exit_status) return *exit_status;
  return signalled ? 0 : 1;
}

}  // namespace singleton::agent
