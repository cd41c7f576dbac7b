#include "controller/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <thread>
#include <vector>

namespace singleton::controller {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(MetricsTest, CounterRendersHelpTypeAndValue) {
  Registry r;
  r.counter("reconcile_total", "Reconciles by result.", {{"result", "success"}}).inc();
  r.counter("reconcile_total", "Reconciles by result.", {{"result", "success"}}).inc(2);
  r.counter("reconcile_total", "Reconciles by result.", {{"result", "error"}}).inc();
  EXPECT_EQ(r.render(),
            "# HELP reconcile_total Reconciles by result.\n"
            "# TYPE reconcile_total counter\n"
            "reconcile_total{result=\"error\"} 1\n"
            "reconcile_total{result=\"success\"} 3\n");
}

TEST(MetricsTest, GaugeSetsAddsAndRendersWithoutLabels) {
  Registry r;
  Gauge& depth = r.gauge("queue_depth", "Items waiting.");
  depth.set(5);
  depth.add(-2);
  EXPECT_EQ(depth.value(), 3);
  EXPECT_EQ(r.render(), "# HELP queue_depth Items waiting.\n# TYPE queue_depth gauge\nqueue_depth 3\n");
  EXPECT_EQ(&r.gauge("queue_depth", "Items waiting."), &depth) << "the same label set is the same handle";
}

TEST(MetricsTest, MasterStatusGaugeAsTheManagerRegistersIt) {
  Registry r;
  r.gauge("leader_election_master_status", "Leader or not.", {{"name", "singleton-operator"}}).set(1);
  EXPECT_TRUE(contains(r.render(), "leader_election_master_status{name=\"singleton-operator\"} 1\n")) << r.render();
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  Histogram& h = r.histogram("reconcile_duration_seconds", "Time per reconcile.", {0.01, 0.1, 1}, {{"op", "x"}});
  for (double v : {0.005, 0.01, 0.05, 0.5, 2.0}) h.observe(v);
  EXPECT_EQ(h.count(), 5u);
  EXPECT_DOUBLE_EQ(h.sum(), 2.565);
  EXPECT_EQ(r.render(),
            "# HELP reconcile_duration_seconds Time per reconcile.\n"
            "# TYPE reconcile_duration_seconds histogram\n"
            "reconcile_duration_seconds_bucket{op=\"x\",le=\"0.01\"} 2\n"
            "reconcile_duration_seconds_bucket{op=\"x\",le=\"0.1\"} 3\n"
            "reconcile_duration_seconds_bucket{op=\"x\",le=\"1\"} 4\n"
            "reconcile_duration_seconds_bucket{op=\"x\",le=\"+Inf\"} 5\n"
            "reconcile_duration_seconds_sum{op=\"x\"} 2.565\n"
            "reconcile_duration_seconds_count{op=\"x\"} 5\n");
}

TEST(MetricsTest, HistogramWithoutLabelsAndDefaultBuckets) {
  Registry r;
  Histogram& h = r.histogram("failover_seconds", "Failover latency.", latencyBuckets());
  h.observe(0.02);
  const std::string text = r.render();
  EXPECT_TRUE(contains(text, "failover_seconds_bucket{le=\"0.01\"} 0\n")) << text;
  EXPECT_TRUE(contains(text, "failover_seconds_bucket{le=\"0.025\"} 1\n")) << text;
  EXPECT_TRUE(contains(text, "failover_seconds_bucket{le=\"10\"} 1\n")) << text;
  EXPECT_TRUE(contains(text, "failover_seconds_bucket{le=\"+Inf\"} 1\n")) << text;
  EXPECT_TRUE(contains(text, "failover_seconds_count 1\n")) << text;
  std::vector<double> bounds = latencyBuckets();
  EXPECT_TRUE(std::is_sorted(bounds.begin(), bounds.end()));
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  Registry r;
  r.gauge("fencing_token", "Token per workload.", {{"workload", "a\"b\\c\nd"}}).set(7);
  EXPECT_TRUE(contains(r.render(), "fencing_token{workload=\"a\\\"b\\\\c\\nd\"} 7\n")) << r.render();
}

TEST(MetricsTest, SeveralLabelsAreSortedByName) {
  Registry r;
  r.gauge("fencing_token", "Token per workload.", {{"workload", "w"}, {"namespace", "ns"}}).set(2);
  EXPECT_TRUE(contains(r.render(), "fencing_token{namespace=\"ns\",workload=\"w\"} 2\n")) << r.render();
}

TEST(MetricsTest, FamiliesRenderInNameOrderAndRemoveDropsOneSeries) {
  Registry r;
  r.gauge("b_metric", "B.", {{"k", "1"}}).set(1);
  r.gauge("b_metric", "B.", {{"k", "2"}}).set(2);
  r.counter("a_metric", "A.").inc();
  r.remove("b_metric", {{"k", "1"}});
  r.remove("no_such_metric", {});
  EXPECT_EQ(r.render(),
            "# HELP a_metric A.\n# TYPE a_metric counter\na_metric 1\n"
            "# HELP b_metric B.\n# TYPE b_metric gauge\nb_metric{k=\"2\"} 2\n");
}

TEST(MetricsTest, NumbersRenderAsPrometheusExpects) {
  Registry r;
  r.gauge("g", "G.", {{"v", "big"}}).set(1e21);
  r.gauge("g", "G.", {{"v", "frac"}}).set(0.25);
  r.gauge("g", "G.", {{"v", "neg"}}).set(-3);
  r.gauge("g", "G.", {{"v", "inf"}}).set(std::numeric_limits<double>::infinity());
  const std::string text = r.render();
  EXPECT_TRUE(contains(text, "g{v=\"big\"} 1e+21\n")) << text;
  EXPECT_TRUE(contains(text, "g{v=\"frac\"} 0.25\n")) << text;
  EXPECT_TRUE(contains(text, "g{v=\"neg\"} -3\n")) << text;
  EXPECT_TRUE(contains(text, "g{v=\"inf\"} +Inf\n")) << text;
}

TEST(MetricsTest, ConcurrentUpdatesAndRendersAreSafe) {
  Registry r;
  Counter& c = r.counter("c_total", "C.");
  Histogram& h = r.histogram("h_seconds", "H.", {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        c.inc();
        h.observe(0.5);
        if (i % 100 == 0) (void)r.render();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value(), 4000);
  EXPECT_EQ(h.count(), 4000u);
  EXPECT_TRUE(contains(r.render(), "h_seconds_bucket{le=\"1\"} 4000\n"));
}

}  // namespace
}  // namespace singleton::controller
