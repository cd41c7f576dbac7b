// What the cpprestsdk transport does beyond the contract every transport keeps (transport_contract_test.cc): its I/O
// pool is process-wide and sized once.
#include <gtest/gtest.h>

#include "kube/client.h"
#include "kube/cpprest_transport.h"

namespace singleton::kube {
namespace {

// The contract tests size the pool at two I/O threads too.
constexpr int kIoThreads = 2;

TEST(CpprestTransport, PoolIsSizedOnce) {
  ClusterConfig config;
  config.server = "https://127.0.0.1:1";
  ASSERT_TRUE(makeTransport(config, {kIoThreads}).ok());
  EXPECT_EQ(detail::initializeIoThreads(7), kIoThreads);  // later sizes are ignored
}

}  // namespace
}  // namespace singleton::kube
