{
  "targets": [
    {
      "target_name": "ambit_native",
      "sources": ["src/ambit_native.cc"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror=format-security"],
      # Plain N-API (no node-addon-api): no extra npm dependency, and one binary works
      # across Node versions.
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "conditions": [
        ["OS!='linux'", {"sources!": ["src/ambit_native.cc"], "sources": ["src/unsupported.cc"]}]
      ]
    }
  ]
}
