// Preloaded into the cluster's processes by `dataplane-l4.js --cpu-prof DIR` (NODE_OPTIONS=--require
// this file; Node 20 does not allow --cpu-prof in NODE_OPTIONS). Does nothing until the process
// gets SIGUSR2: the first one starts V8's sampling profiler (node:inspector), the second stops it
// and writes DIR/cpu-<pid>.cpuprofile (open it in Chrome DevTools or speedscope). So the profile
// covers exactly the window the bench chose. AMBIT_BENCH_CPU_PROF_DIR names DIR.
import fs from 'node:fs';
import inspector from 'node:inspector';
import path from 'node:path';

const dir = process.env.AMBIT_BENCH_CPU_PROF_DIR;
if (dir) {
  let session: inspector.Session | undefined;
  process.on('SIGUSR2', () => {
    if (!session) {
      const s = new inspector.Session();
      session = s;
      s.connect();
      s.post('Profiler.enable', () => s.post('Profiler.start'));
      return;
    }
    const s = session;
    session = undefined;
    s.post('Profiler.stop', (err, res) => {
      if (!err && res?.profile) {
        const file = path.join(dir, `cpu-${process.pid}.cpuprofile`);
        fs.writeFileSync(`${file}.tmp`, JSON.stringify(res.profile));
        fs.renameSync(`${file}.tmp`, file);
      }
      s.disconnect();
    });
  });
}
