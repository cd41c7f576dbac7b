#include "kube/lease.h"

#include <gtest/gtest.h>

#include "util/time_format.h"

namespace singleton::kube {
namespace {

using Json = nlohmann::json;

// As the apiserver returns a Lease written by client-go's leader election.
const char* kServerLease = R"({
  "apiVersion": "coordination.k8s.io/v1",
  "kind": "Lease",
  "metadata": {
    "name": "my-lock",
    "namespace": "default",
    "uid": "6e2b3c5e-1111-2222-3333-444455556666",
    "resourceVersion": "4711",
    "labels": {"app": "demo"},
    "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"}],
    "managedFields": [{"manager": "leader-election-example", "operation": "Update"}]
  },
  "spec": {
    "holderIdentity": "pod-a",
    "leaseDurationSeconds": 15,
    "acquireTime": "2024-03-01T10:00:00.123456Z",
    "renewTime": "2024-03-01T10:05:30.000001Z",
    "leaseTransitions": 3,
    "preferredHolder": "pod-b"
  }
})";

util::WallTime at(const char* text) { return util::parseTime(text).value(); }

TEST(Lease, ParsesClientGoSchema) {
  auto lease = leaseFromJson(Json::parse(kServerLease));
  ASSERT_TRUE(lease.ok()) << lease.error().describe();
  EXPECT_EQ(lease->name, "my-lock");
  EXPECT_EQ(lease->ns, "default");
  EXPECT_EQ(lease->resource_version, "4711");
  EXPECT_EQ(lease->spec.holder_identity, "pod-a");
  EXPECT_EQ(lease->spec.lease_duration_seconds, 15);
  EXPECT_EQ(lease->spec.acquire_time, at("2024-03-01T10:00:00.123456Z"));
  EXPECT_EQ(lease->spec.renew_time, at("2024-03-01T10:05:30.000001Z"));
  EXPECT_EQ(lease->spec.lease_transitions, 3);
}

TEST(Lease, RoundTripKeepsUnknownFieldsAndMicroTime) {
  const Json original = Json::parse(kServerLease);
  Lease lease = leaseFromJson(original).value();
  EXPECT_EQ(leaseToJson(lease), original);  // nothing changed: byte-for-byte the same object

  lease.spec.holder_identity = "pod-c";
  lease.spec.renew_time = at("2024-03-01T10:06:00.5Z");
  lease.spec.lease_transitions = 4;
  const Json written = leaseToJson(lease);
  EXPECT_EQ(written["spec"]["holderIdentity"], "pod-c");
  EXPECT_EQ(written["spec"]["renewTime"], "2024-03-01T10:06:00.500000Z");  // MicroTime: six digits, Z
  EXPECT_EQ(written["spec"]["acquireTime"], "2024-03-01T10:00:00.123456Z");
  EXPECT_EQ(written["spec"]["leaseTransitions"], 4);
  EXPECT_EQ(written["spec"]["preferredHolder"], "pod-b");
  EXPECT_EQ(written["metadata"]["labels"], original["metadata"]["labels"]);
  EXPECT_EQ(written["metadata"]["ownerReferences"], original["metadata"]["ownerReferences"]);
  EXPECT_EQ(written["metadata"]["uid"], original["metadata"]["uid"]);
  EXPECT_EQ(written["metadata"]["resourceVersion"], "4711");
}

TEST(Lease, AbsentOptionalsAreOmitted) {
  Lease lease;
  lease.name = "x";
  lease.ns = "ns";
  lease.spec.holder_identity = "me";
  const Json written = leaseToJson(lease);
  EXPECT_EQ(written, Json::parse(R"({"apiVersion":"coordination.k8s.io/v1","kind":"Lease",
      "metadata":{"name":"x","namespace":"ns"},"spec":{"holderIdentity":"me"}})"));

  // Clearing a field we model removes it, also from an object read earlier.
  Lease read = leaseFromJson(Json::parse(kServerLease)).value();
  read.spec.holder_identity.reset();
  read.spec.acquire_time.reset();
  read.resource_version.clear();
  const Json cleared = leaseToJson(read);
  EXPECT_FALSE(cleared["spec"].contains("holderIdentity"));
  EXPECT_FALSE(cleared["spec"].contains("acquireTime"));
  EXPECT_FALSE(cleared["metadata"].contains("resourceVersion"));
}

TEST(Lease, RoundTripOfOurOwnOutput) {
  Lease lease;
  lease.name = "a";
  lease.ns = "b";
  lease.resource_version = "12";
  lease.spec = {"id", 10, at("2030-01-02T03:04:05.678901Z"), at("2030-01-02T03:04:06Z"), 0};
  const Lease back = leaseFromJson(leaseToJson(lease)).value();
  EXPECT_EQ(back.name, "a");
  EXPECT_EQ(back.ns, "b");
  EXPECT_EQ(back.resource_version, "12");
  EXPECT_EQ(back.spec, lease.spec);
}

// Found by the lease fuzzer: a MicroTime with a 7th fractional digit decoded to nanoseconds, and written back as
// microseconds it was another time.
TEST(Lease, MicroTimesKeepMicrosecondsOnly) {
  Json object = Json::parse(kServerLease);
  object["spec"]["renewTime"] = "2027-12-01T10:00:05.5000002Z";
  object["spec"]["acquireTime"] = "2027-12-01T10:00:05.999999999Z";
  const Lease lease = leaseFromJson(object).value();
  EXPECT_EQ(lease.spec.renew_time, at("2027-12-01T10:00:05.500000Z"));
  EXPECT_EQ(lease.spec.acquire_time, at("2027-12-01T10:00:05.999999Z"));
  EXPECT_EQ(leaseFromJson(leaseToJson(lease)).value().spec, lease.spec);
}

TEST(Lease, NullsMeanAbsent) {
  auto lease = leaseFromJson(Json::parse(R"({"metadata":{"name":"x"},"spec":{"holderIdentity":null,
      "renewTime":null}})"));
  ASSERT_TRUE(lease.ok());
  EXPECT_FALSE(lease->spec.holder_identity);
  EXPECT_FALSE(lease->spec.renew_time);
  EXPECT_TRUE(leaseFromJson(Json::parse(R"({"metadata":{"name":"x"}})")).ok());  // no spec at all
}

TEST(Lease, MalformedObjectsAreBadResponses) {
  const char* cases[] = {
      R"([])",
      R"({"spec":{}})",
      R"({"metadata":{}})",
      R"({"metadata":{"name":7}})",
      R"({"kind":"ConfigMap","metadata":{"name":"x"}})",
      R"({"metadata":{"name":"x"},"spec":[]})",
      R"({"metadata":{"name":"x"},"spec":{"holderIdentity":1}})",
      R"({"metadata":{"name":"x"},"spec":{"leaseDurationSeconds":"15"}})",
      R"({"metadata":{"name":"x"},"spec":{"leaseDurationSeconds":1.5}})",
      R"({"metadata":{"name":"x"},"spec":{"leaseDurationSeconds":99999999999}})",
      R"({"metadata":{"name":"x"},"spec":{"renewTime":"yesterday"}})",
      R"({"metadata":{"name":"x"},"spec":{"acquireTime":5}})",
  };
  for (const char* text : cases) {
    SCOPED_TRACE(text);
    auto lease = leaseFromJson(Json::parse(text));
    ASSERT_FALSE(lease.ok());
    EXPECT_EQ(lease.error().code, util::ErrorCode::kBadResponse);
  }
  EXPECT_NE(leaseFromJson(Json::parse(R"({"metadata":{"name":"x"},"spec":{"renewTime":"yesterday"}})"))
                .error()
                .message.find("spec.renewTime"),
            std::string::npos);
}

}  // namespace
}  // namespace singleton::kube
