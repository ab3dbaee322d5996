// Built on platforms other than Linux, so that `npm ci` still succeeds on a developer's
// laptop (the control plane and the CLI run anywhere). It exports nothing. The wrapper
// reports the platform as unsupported when a netns or socket function is called.
#include <node_api.h>

static napi_value Init(napi_env, napi_value exports) { return exports; }

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
