// singleton-agent: runs COMMAND only while this pod is its workload's active leader. See --help and docs/handoff.md.
//
// Threads: a reflector watches the Lease; a confirmer sends the leader's confirmation GETs (and a candidate's first
// one); the main loop owns COMMAND and decides from what those two report; a tiny HTTP server and the signal thread
// only read or set flags. Every deadline is on the monotonic clock.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "cli/singleton-agent/http.h"
#include "cli/singleton-agent/options.h"
#include "election/handoff.h"
#include "kube/beast_transport.h"
#include "kube/client.h"
#include "kube/config.h"
#include "process/child.h"
#include "util/backoff.h"
#include "util/duration.h"
#include "util/flags.h"
#include "util/signals.h"
#include "util/time_format.h"
#include "watch/reflector.h"

namespace {

using namespace singleton;
using Json = nlohmann::json;
using election::HandoffView;
using util::Millis;
using util::MonoTime;

constexpr const char* kProgram = "singleton-agent";
constexpr int kExitUsage = 2;
constexpr int kExitRuntime = 1;

const util::Clock& clock_ = util::systemClock();

// One JSON object per line on stdout; lines never interleave.
class EventPrinter {
 public:
  explicit EventPrinter(std::string pod) : pod_(std::move(pod)) {}
  void print(const char* event, Json fields = Json::object()) {
    nlohmann::ordered_json line = {{"ts", util::formatMillisTime(clock_.wallNow())}, {"event", event}, {"pod", pod_}};
    for (auto& [k, v] : fields.items()) line[k] = v;
    std::lock_guard guard(mutex_);
    std::fputs((line.dump() + "\n").c_str(), stdout);
    std::fflush(stdout);
  }

 private:
  std::string pod_;
  std::mutex mutex_;
};

// The published role: GET /role, /readyz and the --role-dir files.
class RoleBoard {
 public:
  RoleBoard(std::string dir, EventPrinter& printer) : dir_(std::move(dir)), printer_(printer) {}

  void set(bool leader, long long token) {
    std::lock_guard guard(mutex_);
    if (leader == leader_ && token == token_ && published_) return;
    const bool changed_role = leader != leader_ || !published_;
    leader_ = leader;
    token_ = token;
    published_ = true;
    if (changed_role) since_ = clock_.wallNow();
    writeFiles();
    printer_.print("role", {{"role", leader ? "leader" : "standby"}, {"token", token}});
  }
  void setReady(bool ready, const std::string& why) {
    if (ready_.exchange(ready) != ready) spdlog::info("readiness: {}{}", ready ? "ready" : "not ready: ", why);
  }
  bool ready() const { return ready_; }
  Json json() const {
    std::lock_guard guard(mutex_);
    return {{"role", leader_ ? "leader" : "standby"}, {"token", token_}, {"since", util::formatMillisTime(since_)}};
  }

 private:
  void writeFiles() {
    if (dir_.empty()) return;
    writeAtomically("role", std::string(leader_ ? "leader" : "standby") + "\n");
    writeAtomically("token", std::to_string(token_) + "\n");
  }
  void writeAtomically(const std::string& name, const std::string& text) {
    const std::filesystem::path tmp = std::filesystem::path(dir_) / ("." + name + ".tmp");
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << text;
      out.flush();
      if (!out) {
        spdlog::error("cannot write {}", tmp.string());
        return;
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, std::filesystem::path(dir_) / name, ec);
    if (ec) spdlog::error("cannot rename {}: {}", tmp.string(), ec.message());
  }

  std::string dir_;
  EventPrinter& printer_;
  mutable std::mutex mutex_;
  bool leader_ = false;
  bool published_ = false;
  long long token_ = 0;
  util::WallTime since_ = clock_.wallNow();
  std::atomic<bool> ready_{true};
};

// What the watch and the confirmation GETs report to the main loop.
struct Shared {
  std::mutex mutex;
  std::condition_variable_any cv;
  // The watch: the Lease as last seen (nullopt: absent), and a counter of changes.
  std::optional<Json> watched;
  bool watch_synced = false;
  std::uint64_t watch_seq = 0;
  // The confirmer.
  bool want_confirm = false;  // the main loop wants periodic confirmation GETs
  bool confirm_now = false;   // the main loop wants one at once
  struct Get {
    MonoTime sent{};
    bool ok = false;
    bool not_found = false;
    HandoffView view;
    std::string error;
  };
  std::optional<Get> last_get;
  std::uint64_t get_seq = 0;
};

class LeaseHandler final : public watch::Handler {
 public:
  LeaseHandler(Shared& shared, std::string name) : shared_(shared), name_(std::move(name)) {}
  void onReplace(std::vector<Json> objects, const std::string&) override {
    std::optional<Json> found;
    for (auto& o : objects) {
      if (o.value("/metadata/name"_json_pointer, std::string()) == name_) found = std::move(o);
    }
    publish(std::move(found));
  }
  void onEvent(const watch::Event& event) override {
    if (event.object.value("/metadata/name"_json_pointer, std::string()) != name_) return;
    publish(event.type == watch::EventType::kDeleted ? std::nullopt : std::optional<Json>(event.object));
  }

 private:
  void publish(std::optional<Json> lease) {
    {
      std::lock_guard guard(shared_.mutex);
      shared_.watched = std::move(lease);
      shared_.watch_synced = true;
      ++shared_.watch_seq;
    }
    shared_.cv.notify_all();
  }
  Shared& shared_;
  std::string name_;
};

// Sends the confirmation GETs: while wanted, one every renew-interval from the previous send (sooner after a
// failure, with backoff), and one at once when asked. Each result carries its send time.
void confirmLoop(std::stop_token stop, Shared& shared, kube::Client& client, const std::string& ns,
                 const std::string& name, Millis renew_interval) {
  util::Backoff backoff({Millis(100), renew_interval, 2.0, 0.2});
  std::unique_lock lock(shared.mutex);
  while (!stop.stop_requested()) {
    shared.cv.wait(lock, stop, [&] { return shared.want_confirm || shared.confirm_now; });
    if (stop.stop_requested()) break;
    shared.confirm_now = false;
    lock.unlock();
    Shared::Get get;
    get.sent = clock_.now();
    auto lease = client.get(kube::kLeases, ns, name);
    if (lease.ok()) {
      get.ok = true;
      get.view = election::parseHandoff(*lease);
    } else {
      get.not_found = lease.error().code == util::ErrorCode::kNotFound;
      get.ok = get.not_found;  // an answer: the Lease is gone
      get.error = lease.error().message;
    }
    const MonoTime next = get.ok ? get.sent + renew_interval : clock_.now() + backoff.next();
    if (get.ok) backoff.reset();
    if (!get.ok) spdlog::warn("confirming lease {}/{}: {}", ns, name, get.error);
    lock.lock();
    shared.last_get = std::move(get);
    ++shared.get_seq;
    shared.cv.notify_all();
    clock_.waitUntil(lock, shared.cv, next, stop, [&] { return shared.confirm_now || !shared.want_confirm; });
  }
}

int fail(int code, const std::string& message) { return util::fail(kProgram, code, message); }

}  // namespace

int main(int argc, char** argv) {
  util::TerminationSignals signals;  // before any other thread exists

  auto parsed = cli::parseAgentOptions(std::vector<std::string>(argv + 1, argv + argc), cli::agentEnvironment());
  if (!parsed.ok()) return fail(kExitUsage, parsed.error().message);
  const cli::AgentOptions& options = *parsed;
  if (options.help) {
    std::cout << cli::agentUsage();
    return 0;
  }
  if (options.version) {
    std::cout << "singleton-agent 0.1.0\n";
    return 0;
  }
  if (!options.role_dir.empty() && !std::filesystem::is_directory(options.role_dir)) {
    return fail(kExitUsage, "--role-dir: \"" + options.role_dir + "\" is not a directory");
  }

  auto logger = spdlog::stderr_color_mt(kProgram);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(options.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);

  auto config = kube::loadDefault(kube::KubeconfigOptions{options.kubeconfig, ""});
  if (!config.ok()) return fail(kExitUsage, config.error().message);
  auto transport = kube::makeBeastTransport(*config);
  if (!transport.ok()) return fail(kExitUsage, transport.error().message);
  // A confirmation that takes longer than renew-deadline is useless: give up on it then.
  kube::Client client(*transport, kube::ClientOptions{options.renew_deadline, "singleton-agent/0.1"});
  const std::string ns = options.pod_namespace;
  const std::string lease_name = options.leaseName();
  const std::string& pod = options.pod_name;
  const std::string& uid = options.pod_uid;

  EventPrinter printer(pod);
  RoleBoard board(options.role_dir, printer);
  board.set(false, 0);

  auto server = cli::TinyHttpServer::listen(options.listen_host, options.listen_port, [&](const std::string& path) {
    if (path == "/role") return cli::HttpAnswer{200, "application/json", board.json().dump() + "\n"};
    if (path == "/healthz") return cli::HttpAnswer{200, "text/plain", "ok\n"};
    if (path == "/readyz") {
      return board.ready() ? cli::HttpAnswer{200, "text/plain", "ok\n"}
                           : cli::HttpAnswer{503, "text/plain", "self-demoted: cannot confirm the lease\n"};
    }
    return cli::HttpAnswer{404, "text/plain", "not found\n"};
  });
  if (!server.ok()) return fail(kExitUsage, server.error().message);

  Shared shared;
  std::stop_source stop_all;  // a second signal: leave at once (COMMAND is still stopped first)
  std::atomic<int> signal_count{0};
  signals.start([&](int sig) {
    spdlog::info("received {}; stopping", util::TerminationSignals::name(sig));
    if (++signal_count > 1) stop_all.request_stop();
    shared.cv.notify_all();
  });

  LeaseHandler handler(shared, lease_name);
  watch::ReflectorOptions reflector_options;
  reflector_options.ns = ns;
  reflector_options.field_selector = "metadata.name=" + lease_name;
  reflector_options.transform = [](Json& o) {
    if (o.contains("metadata") && o["metadata"].is_object()) o["metadata"].erase("managedFields");
  };
  watch::Reflector reflector(client, kube::kLeases, reflector_options, handler);
  std::jthread watcher([&](std::stop_token stop) { reflector.run(stop); });
  std::jthread confirmer(
      [&](std::stop_token stop) { confirmLoop(stop, shared, client, ns, lease_name, options.renew_interval); });

  spdlog::info("pod {}/{} (uid {}), lease {}/{}; serving on {}:{}", ns, pod, uid, ns, lease_name, options.listen_host,
               server->get()->port());
  printer.print("ready", {{"address", options.listen_host + ":" + std::to_string(server->get()->port())},
                          {"lease", ns + "/" + lease_name}});

  // The main loop's state.
  bool leading = false;
  long long token = 0;
  MonoTime confirmed_sent{};  // send time of the last GET that confirmed this leadership
  std::optional<process::Child> child;
  MonoTime child_started{};
  bool timings_checked = false;
  Millis grace = options.grace_period;
  Millis kill_wait{0};
  std::uint64_t seen_watch = 0;
  std::uint64_t seen_get = 0;
  MonoTime next_ack{};
  MonoTime watch_changed_at{};  // when the main loop last saw the watch change
  bool warned_no_duration = false;
  bool draining = false;  // signalled: COMMAND stopped, waiting to acknowledge the move away from this pod
  MonoTime drain_until{};
  util::Backoff ack_backoff({Millis(100), Millis(5000), 2.0, 0.2});
  std::optional<int> exit_status;

  auto stopLeading = [&](const char* reason) {
    if (!leading) return;
    leading = false;
    {
      std::lock_guard guard(shared.mutex);
      shared.want_confirm = false;
    }
    if (child) {
      const MonoTime t = clock_.now();
      spdlog::info("stopping command (pid {}, {}): SIGTERM, SIGKILL after {}", child->pid(), reason,
                   util::formatDuration(grace));
      const int status = child->terminate(grace);
      const auto took = std::chrono::duration_cast<Millis>(clock_.now() - t);
      spdlog::info("command stopped with status {} after {}", status, util::formatDuration(took));
      printer.print("stopped_command",
                    {{"token", token}, {"status", status}, {"reason", reason}, {"ms", took.count()}});
      child.reset();
    }
    board.set(false, token);
  };

  // Checks the safety bound against the Lease's own duration, the first time the Lease shows one.
  auto checkTimings = [&](const HandoffView& view) -> std::optional<int> {
    if (timings_checked || view.lease_duration_seconds <= 0) return std::nullopt;
    const Millis lease_duration(static_cast<long long>(view.lease_duration_seconds) * 1000);
    kill_wait = cli::agentKillWait(lease_duration, options.renew_deadline);
    if (!options.grace_period_set) grace = cli::agentGracePeriod(lease_duration, options.renew_deadline);
    auto s = election::checkAgentTimings(lease_duration, options.renew_deadline,
                                         options.command.empty() ? Millis(0) : grace + kill_wait);
    if (!s.ok() || (!options.command.empty() && grace < Millis(0))) {
      const std::string message =
          "lease " + ns + "/" + lease_name + ": " +
          (s.ok() ? std::string("renew deadline leaves no grace period") : s.error().message) +
          (options.command.empty() ? std::string()
                                   : " (stop bound = grace period " + util::formatDuration(grace) + " + reap wait " +
                                         util::formatDuration(kill_wait) + ")");
      std::fprintf(stderr, "%s: %s\n", kProgram, message.c_str());
      return kExitUsage;
    }
    timings_checked = true;
    spdlog::info("lease duration {}: renew deadline {}, grace period {}, reap wait {}",
                 util::formatDuration(lease_duration), util::formatDuration(options.renew_deadline),
                 util::formatDuration(grace), util::formatDuration(kill_wait));
    return std::nullopt;
  };

  const std::stop_token stop = stop_all.get_token();
  while (!stop.stop_requested()) {
    std::optional<Json> watched;
    bool watch_synced = false;
    std::optional<Shared::Get> get;
    bool acked_now = false;
    bool new_watch = false;
    bool new_get = false;
    {
      std::unique_lock lock(shared.mutex);
      MonoTime wake = clock_.now() + Millis(child ? 100 : 200);  // COMMAND's own exit is polled
      if (leading) wake = std::min(wake, confirmed_sent + options.renew_deadline);
      if (next_ack > MonoTime{}) wake = std::min(wake, next_ack);
      if (draining) wake = std::min(wake, drain_until);
      clock_.waitUntil(lock, shared.cv, wake, stop, [&] {
        return shared.watch_seq != seen_watch || shared.get_seq != seen_get || (signal_count > 0 && !draining);
      });
      new_watch = shared.watch_seq != seen_watch;
      new_get = shared.get_seq != seen_get;
      seen_watch = shared.watch_seq;
      seen_get = shared.get_seq;
      watched = shared.watched;
      watch_synced = shared.watch_synced;
      get = shared.last_get;
    }
    if (stop.stop_requested()) break;
    const MonoTime now = clock_.now();
    if (new_watch) watch_changed_at = now;
    if (signal_count > 0 && !draining) {
      // Pod deletion: COMMAND stops first. Then, if this pod holds the Lease, wait a little for the operator's move
      // (which names this pod as the one to stop first) and acknowledge it, so the successor need not wait for the
      // operator's own evidence.
      draining = true;
      drain_until = now + std::min(options.renew_deadline, Millis(5000));
      stopLeading("signal");
      {
        std::lock_guard guard(shared.mutex);
        shared.want_confirm = false;
      }
    }

    if (child) {
      if (auto status = child->poll()) {
        spdlog::warn("command (pid {}) exited by itself with status {}; exiting with it", child->pid(), *status);
        printer.print("command_exited", {{"token", token}, {"status", *status}});
        child.reset();
        leading = false;
        board.set(false, token);
        exit_status = *status;
        break;
      }
    }

    const HandoffView wview = watched ? election::parseHandoff(*watched) : HandoffView{};
    if (watched) {
      if (auto code = checkTimings(wview)) {
        stopLeading("bad timings");
        exit_status = *code;
        break;
      }
    }
    if (get && get->ok && !get->not_found) {
      if (auto code = checkTimings(get->view)) {
        stopLeading("bad timings");
        exit_status = *code;
        break;
      }
    }
    auto mine = [&](const HandoffView& v) { return election::mayBeActive(v, pod, uid) && v.token == token; };

    if (leading) {
      if (new_get && get->ok && !get->not_found && mine(get->view)) {
        confirmed_sent = std::max(confirmed_sent, get->sent);
      }
      const bool moved_watch = new_watch && watch_synced && !mine(wview);
      const bool moved_get = new_get && get->ok && (get->not_found || !mine(get->view));
      if (moved_watch || moved_get) {
        const HandoffView& v = moved_get ? get->view : wview;
        spdlog::info("lease {}/{} no longer lets {} lead with token {} (holder \"{}\", token {}, hand-off {})", ns,
                     lease_name, pod, token, v.holder, v.token, v.complete ? "complete" : "pending");
        stopLeading(moved_get ? "lease moved (confirmation)" : "lease moved (watch)");
      } else if (now >= confirmed_sent + options.renew_deadline) {
        spdlog::warn("could not confirm lease {}/{} for {}; stepping down", ns, lease_name,
                     util::formatDuration(options.renew_deadline));
        board.setReady(false, "no confirmation within renew-deadline");
        stopLeading("self-demoted");
        printer.print("self_demoted", {{"token", token}});
      }
    }

    if (!leading) {
      // A pod that is not the holder any more is an ordinary standby again: ready.
      if (watch_synced && wview.holder != pod) board.setReady(true, "");
      const bool candidate = !draining && watch_synced && election::mayBeActive(wview, pod, uid);
      bool ask_now = false;
      if (candidate && !timings_checked && !warned_no_duration) {
        warned_no_duration = true;
        spdlog::warn(
            "lease {}/{} has no spec.leaseDurationSeconds: the agent cannot check its timings and will not "
            "start",
            ns, lease_name);
      }
      if (candidate && timings_checked) {
        // Confirmed by a GET sent recently enough, which agrees with the watch (same token).
        const bool confirmed = get && get->ok && !get->not_found && election::mayBeActive(get->view, pod, uid) &&
                               get->view.token == wview.token && now < get->sent + options.renew_deadline;
        if (confirmed) {
          token = wview.token;
          confirmed_sent = get->sent;
          leading = true;
          board.setReady(true, "");
          if (!options.command.empty()) {
            auto spawned = process::Child::spawn({options.command,
                                                  {{"SINGLETON_FENCING_TOKEN", std::to_string(token)},
                                                   {"SINGLETON_ROLE", "leader"},
                                                   {"SINGLETON_WORKLOAD", options.workload},
                                                   {"POD_NAME", pod}}});
            if (!spawned.ok()) {
              spdlog::error("{}", spawned.error().message);
              leading = false;
              exit_status = 127;
              break;
            }
            child.emplace(std::move(*spawned));
            child_started = now;
            spdlog::info("started command (pid {}) with fencing token {}", child->pid(), token);
            printer.print("started_command", {{"token", token}, {"pid", child->pid()}});
          }
          board.set(true, token);
        } else if (!confirmed && (!get || get->sent < watch_changed_at)) {
          // The last GET is older than what the watch showed: one more, now (not at the next interval).
          ask_now = true;
        }
      }
      {
        std::lock_guard guard(shared.mutex);
        shared.want_confirm = leading || candidate;
        if (ask_now) shared.confirm_now = true;
      }
      shared.cv.notify_all();
      if (!leading) board.set(false, wview.token);

      // The hand-off away from this pod: COMMAND is not running (it runs only while leading), so acknowledge.
      if (watch_synced && election::mustAck(wview, pod, uid) && now >= next_ack) {
        auto patched =
            client.mergePatch(kube::kLeases, ns, lease_name, election::ackMergePatch(wview, election::AckedBy::kAgent));
        if (patched.ok()) {
          spdlog::info("acknowledged the hand-off of lease {}/{} to {} (token {})", ns, lease_name, wview.holder,
                       wview.token);
          printer.print("acked_handoff", {{"token", wview.token}, {"to", wview.holder}});
          acked_now = true;
          next_ack = now + Millis(500);  // the watch brings the acknowledged version meanwhile
          ack_backoff.reset();
        } else if (patched.error().code == util::ErrorCode::kConflict) {
          spdlog::info("ack of lease {}/{}: conflict; re-reading", ns, lease_name);
          // The watch brings the newer version; the retry uses it.
          next_ack = now + Millis(50);
        } else {
          spdlog::warn("ack of lease {}/{}: {}", ns, lease_name, patched.error().message);
          next_ack = now + ack_backoff.next();
        }
      } else if (!(watch_synced && election::mustAck(wview, pod, uid))) {
        next_ack = {};
      }
    }
    if (leading && new_watch && watch_synced && mine(wview)) board.set(true, token);
    if (draining) {
      const bool pending = watch_synced && election::mustAck(wview, pod, uid);
      const bool still_ours = watch_synced && wview.holder == pod && wview.holder_uid == uid;
      if (acked_now || (!pending && !still_ours)) break;
      if (now >= drain_until) {
        spdlog::info("lease {}/{}: no hand-off from {} to acknowledge; leaving", ns, lease_name, pod);
        break;
      }
    }
  }

  // Leaving: COMMAND first (bounded; already done when signalled), then the threads.
  const bool signalled = signal_count > 0;
  stopLeading(signalled ? "signal" : "exit");
  confirmer.request_stop();
  watcher.request_stop();
  shared.cv.notify_all();
  confirmer.join();
  watcher.join();
  signals.stop();
  if (exit_status) return *exit_status;
  return signalled ? 0 : kExitRuntime;
}
