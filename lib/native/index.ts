// Placeholder: the native addon (lib/native/src/*.cc, built by node-gyp) and its typed
// wrapper live here. Nothing else in the tree touches a raw fd or a netns.
export {};
