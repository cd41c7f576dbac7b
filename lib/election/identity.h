// Candidate identities. Two processes that share an identity each believe the Lease is theirs, so defaults must be
// unique per process; the elector also detects a second writer under its identity (LeaderElector::Outcome).
#pragma once

#include <string>

namespace singleton::election {

// "<hostname>_<random>", like controller-runtime's default: unique per process, and still says where it runs.
std::string uniqueIdentity();
// $POD_NAME when set (unique within a cluster), else uniqueIdentity().
std::string defaultIdentity();

}  // namespace singleton::election
