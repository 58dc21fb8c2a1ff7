// The cold path with sharp: a fresh node process loads sharp, decodes the photo, resizes it to
// 800 wide (Lanczos3), encodes JPEG q80 (resize800_jpeg of bench.js), prints the size and exits.
// Run from the folder where sharp is installed (SHARP_DIR): sharp is resolved from there, not
// from this file's folder.
// usage: node cold.js PHOTO
const fs = require('fs');
const sharp = require(require.resolve('sharp', { paths: [process.cwd()] }));

// Same settings as bench.js: one thread (one core), no operation cache.
sharp.cache(false);
sharp.concurrency(1);
sharp(fs.readFileSync(process.argv[2]))
  .resize({ width: 800, kernel: 'lanczos3' })
  .jpeg({ quality: 80 })
  .toBuffer()
  .then((out) => console.log(out.length));
