// A fenced register and a linearizability checker for histories of it, as etcd's robustness tests check etcd (Lowe's
// just-in-time linearization, the algorithm of Porcupine, with a cache of visited states).
//
// The model: the register holds (highest token, last value). write(token, value) succeeds iff token >= the highest
// token accepted so far, and then sets both; a refused write changes nothing. read() returns the last value. An
// operation whose answer was lost (the client died or its connection broke) may have taken effect at any time after
// its invocation, or never: it is checked as if it returned at the end of time, with either outcome.
//
// The history format (one JSON object per line, written by tests/tools/fenced_client.cc):
//   {"id":"alpha-17","op":"write","token":3,"value":"alpha/17","invoke_ns":...}            (invocation)
//   {"id":"alpha-17","result":"ok"|"refused","complete_ns":...}                            (completion)
//   {"id":"alpha-18","op":"read","invoke_ns":...} /
//   {"id":"alpha-18","result":"ok","value":"alpha/17","complete_ns":...}
// Times are CLOCK_MONOTONIC nanoseconds of the machine, so histories of several processes merge.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

namespace singleton::testing::fenced {

struct Operation {
  std::string id;
  bool is_write = false;
  long long token = 0;  // writes
  std::string value;    // writes: the value written; reads: the value returned
  std::int64_t invoke_ns = 0;
  std::int64_t complete_ns = std::numeric_limits<std::int64_t>::max();  // max: the answer never came
  enum class Result { kOk, kRefused, kUnknown } result = Result::kUnknown;
};

// Builds operations from history lines (any order, several files concatenated). Lines that are not history entries
// are skipped; a completion without its invocation is ignored.
inline std::vector<Operation> parseHistory(const std::vector<std::string>& lines) {
  std::map<std::string, Operation> by_id;
  std::vector<std::pair<std::string, nlohmann::json>> completions;
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("id")) continue;
    const std::string id = j["id"].get<std::string>();
    if (j.contains("op")) {
      Operation op;
      op.id = id;
      op.is_write = j["op"] == "write";
      op.token = j.value("token", 0LL);
      op.value = j.value("value", "");
      op.invoke_ns = j.value("invoke_ns", std::int64_t{0});
      by_id[id] = op;
    } else if (j.contains("result")) {
      completions.emplace_back(id, j);
    }
  }
  for (const auto& [id, j] : completions) {
    auto it = by_id.find(id);
    if (it == by_id.end()) continue;
    Operation& op = it->second;
    const std::string result = j["result"].get<std::string>();
    if (result == "unknown") continue;
    op.result = result == "ok" ? Operation::Result::kOk : Operation::Result::kRefused;
    op.complete_ns = j.value("complete_ns", op.complete_ns);
    if (!op.is_write) op.value = j.value("value", "");
  }
  std::vector<Operation> ops;
  for (auto& [id, op] : by_id) ops.push_back(std::move(op));
  std::sort(ops.begin(), ops.end(), [](const Operation& a, const Operation& b) { return a.invoke_ns < b.invoke_ns; });
  return ops;
}

struct State {
  long long highest = std::numeric_limits<long long>::min();
  std::string value;
  bool operator==(const State&) const = default;
};

// The model's step: whether `op` with its recorded outcome is possible in `state`, and the state after it.
inline std::optional<State> step(const State& state, const Operation& op) {
  if (!op.is_write) {
    if (op.result == Operation::Result::kUnknown) return state;
    return op.value == state.value ? std::optional<State>(state) : std::nullopt;
  }
  const bool accepted = op.token >= state.highest;
  switch (op.result) {
    case Operation::Result::kOk:
      if (!accepted) return std::nullopt;
      return State{op.token, op.value};
    case Operation::Result::kRefused:
      if (accepted) return std::nullopt;
      return state;
    case Operation::Result::kUnknown:  // took effect here (if it could); "never" is linearizing it last
      return accepted ? State{op.token, op.value} : state;
  }
  return std::nullopt;
}

struct CheckResult {
  bool linearizable = true;
  std::size_t operations = 0;
  // The longest prefix (in invocation order) that could be linearized, and the operation that could not follow it.
  std::string first_stuck;
};

// Lowe's algorithm: a list of call and return entries in time order; linearize a pending call, or backtrack at a
// return whose call is not yet linearized. Visited (linearized set, state) pairs are cached.
inline CheckResult checkLinearizable(const std::vector<Operation>& ops) {
  struct Entry {
    bool is_call;
    std::size_t op;
    std::int64_t time;
    Entry* match = nullptr;  // call <-> return
    Entry* prev = nullptr;
    Entry* next = nullptr;
  };
  CheckResult out;
  out.operations = ops.size();
  const std::size_t n = ops.size();
  std::vector<Entry> entries;
  entries.reserve(2 * n + 1);
  for (std::size_t i = 0; i < n; ++i) {
    entries.push_back({true, i, ops[i].invoke_ns});
    entries.push_back({false, i, ops[i].complete_ns});
  }
  // Calls before returns at equal times: overlapping operations may take either order.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.time != b.time) return a.time < b.time;
    return a.is_call && !b.is_call;
  });
  std::vector<Entry*> call_of(n, nullptr), return_of(n, nullptr);
  for (auto& e : entries) (e.is_call ? call_of : return_of)[e.op] = &e;
  for (std::size_t i = 0; i < n; ++i) {
    call_of[i]->match = return_of[i];
    return_of[i]->match = call_of[i];
  }
  Entry head{true, 0, 0};
  Entry* prev = &head;
  for (auto& e : entries) {
    prev->next = &e;
    e.prev = prev;
    prev = &e;
  }

  auto lift = [](Entry* call) {  // removes a call and its return from the list
    call->prev->next = call->next;
    if (call->next) call->next->prev = call->prev;
    Entry* ret = call->match;
    ret->prev->next = ret->next;
    if (ret->next) ret->next->prev = ret->prev;
  };
  auto unlift = [](Entry* call) {
    Entry* ret = call->match;
    ret->prev->next = ret;
    if (ret->next) ret->next->prev = ret;
    call->prev->next = call;
    if (call->next) call->next->prev = call;
  };

  // The cache key: the linearized set as bit words, and the state.
  struct Key {
    std::vector<std::uint64_t> bits;
    State state;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const {
      std::size_t h = std::hash<long long>()(k.state.highest) ^ std::hash<std::string>()(k.state.value);
      for (auto w : k.bits) h = h * 1000003u ^ std::hash<std::uint64_t>()(w);
      return h;
    }
  };
  std::vector<std::uint64_t> linearized((n + 63) / 64, 0);
  auto flip = [&](std::size_t op) { linearized[op / 64] ^= std::uint64_t{1} << (op % 64); };
  std::unordered_set<Key, KeyHash> cache;
  std::vector<std::pair<Entry*, State>> stack;
  State state;
  std::size_t best = 0;
  Entry* entry = head.next;
  while (head.next != nullptr) {
    if (entry->is_call) {
      const auto next_state = step(state, ops[entry->op]);
      bool take = false;
      if (next_state) {
        flip(entry->op);
        take = cache.insert(Key{linearized, *next_state}).second;
        if (!take) flip(entry->op);
      }
      if (take) {
        stack.emplace_back(entry, state);
        state = *next_state;
        lift(entry);
        best = std::max(best, stack.size());
        entry = head.next;
      } else {
        entry = entry->next;
      }
    } else {
      // A return whose call is still pending: nothing linearizes before it, so undo the last choice.
      if (stack.empty()) {
        out.linearizable = false;
        out.first_stuck = ops[entry->op].id;
        return out;
      }
      auto [call, before] = stack.back();
      stack.pop_back();
      state = before;
      flip(call->op);
      unlift(call);
      entry = call->next;
    }
  }
  (void)best;
  return out;
}

// Writes the store accepted although a write with a higher token had completed before they were invoked: what the
// fence must make impossible (0), counted directly from the history.
inline std::size_t acceptedStaleWrites(const std::vector<Operation>& ops) {
  std::size_t stale = 0;
  for (const auto& w : ops) {
    if (!w.is_write || w.result != Operation::Result::kOk) continue;
    for (const auto& earlier : ops) {
      if (earlier.is_write && earlier.result == Operation::Result::kOk && earlier.token > w.token &&
          earlier.complete_ns < w.invoke_ns) {
        ++stale;
        break;
      }
    }
  }
  return stale;
}

inline std::size_t refusedWrites(const std::vector<Operation>& ops) {
  return static_cast<std::size_t>(std::count_if(ops.begin(), ops.end(), [](const Operation& op) {
    return op.is_write && op.result == Operation::Result::kRefused;
  }));
}

}  // namespace singleton::testing::fenced
