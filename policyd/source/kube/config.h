// How to reach the API server: in-cluster (service account) or a kubeconfig file. Credentials
// that live in files (the service-account token, which the kubelet rotates) are named, not read,
// so the HTTP client rereads them when they change.
#pragma once

#include <map>
#include <string>

#include "common/result.h"

namespace sluice::source::kube {

struct ClusterConfig {
  std::string server;  // "https://10.96.0.1:443" (no trailing slash)
  // Cluster CA: a PEM file or inline PEM. Neither: the system trust store.
  std::string caFile;
  std::string caData;
  bool insecureSkipTlsVerify = false;
  // Bearer token: inline, or a file reread when it changes.
  std::string token;
  std::string tokenFile;
  // Client certificate and key (PEM), as files or inline.
  std::string clientCertFile;
  std::string clientCertData;
  std::string clientKeyFile;
  std::string clientKeyData;
  // For logs: "kubeconfig /root/.kube/config context kind-kind" or "in-cluster".
  std::string origin;
};

// The service account's view: KUBERNETES_SERVICE_HOST/PORT, the token and CA under
// `saDir` (/var/run/secrets/kubernetes.io/serviceaccount).
Result<ClusterConfig> inClusterConfig(
    const std::map<std::string, std::string>& env,
    const std::string& saDir = "/var/run/secrets/kubernetes.io/serviceaccount");

// A kubeconfig's context (`context` empty: current-context). Relative file paths in it are
// relative to the kubeconfig's directory, as kubectl does. Errors name the file and field.
Result<ClusterConfig> loadKubeconfig(const std::string& path, const std::string& context);

// What the daemon and sluicectl use: `kubeconfig` if given, else $KUBECONFIG (first entry),
// else in-cluster.
Result<ClusterConfig> resolveConfig(const std::string& kubeconfig, const std::string& context,
                                    const std::map<std::string, std::string>& env);

// The process environment, for resolveConfig / inClusterConfig.
std::map<std::string, std::string> processEnv();

}  // namespace sluice::source::kube
