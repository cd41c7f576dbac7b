#include "kube/object.h"

#include <gtest/gtest.h>

namespace singleton::kube {
namespace {

using Json = nlohmann::json;

const Json kPod = Json::parse(R"({
  "metadata": {"name": "web-0", "namespace": "prod", "uid": "u1", "resourceVersion": "42",
               "labels": {"app": "web", "n": 3}, "annotations": {"token": "7", "bad": "-1", "empty": ""},
               "ownerReferences": [{"uid": "w1", "controller": true}, {"uid": "w2"}]},
  "status": {"conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]}
})");

TEST(Object, ReadsMetadata) {
  EXPECT_EQ(nameOf(kPod), "web-0");
  EXPECT_EQ(namespaceOf(kPod), "prod");
  EXPECT_EQ(uidOf(kPod), "u1");
  EXPECT_EQ(resourceVersionOf(kPod), "42");
  EXPECT_EQ(labelOf(kPod, "app"), "web");
  EXPECT_EQ(labelOf(kPod, "n"), "");  // not a string
  EXPECT_EQ(annotationOf(kPod, "empty"), "");
  EXPECT_EQ(annotationOf(kPod, "missing"), std::nullopt);
  EXPECT_EQ(integerAnnotationOf(kPod, "token"), 7);
  EXPECT_EQ(integerAnnotationOf(kPod, "bad"), std::nullopt);
  EXPECT_TRUE(isControlledBy(kPod, "w1"));
  EXPECT_FALSE(isControlledBy(kPod, "w2"));  // an owner, not the controller
  EXPECT_FALSE(isControlledBy(kPod, ""));
}

TEST(Object, ToleratesAnyShape) {
  for (const Json& odd : {Json(), Json::array(), Json{{"metadata", 1}}, Json{{"status", {{"conditions", "x"}}}}}) {
    EXPECT_EQ(nameOf(odd), "");
    EXPECT_EQ(annotationOf(odd, "a"), std::nullopt);
    EXPECT_FALSE(isControlledBy(odd, "w1"));
    EXPECT_EQ(conditionOf(odd, "Ready"), nullptr);
  }
}

TEST(Object, FindsConditionsAndPointers) {
  const Json* ready = conditionOf(kPod, "Ready");
  ASSERT_NE(ready, nullptr);
  EXPECT_EQ((*ready)["status"], "False");
  EXPECT_EQ(conditionOf(kPod, "Initialized"), nullptr);
  EXPECT_EQ(labelPointer("singleton.dev/role"), "/metadata/labels/singleton.dev~1role");
  EXPECT_EQ(annotationPointer("a~b"), "/metadata/annotations/a~0b");
}

}  // namespace
}  // namespace singleton::kube
