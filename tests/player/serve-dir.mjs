#!/usr/bin/env node
// Minimal static file server with CORS, for self-testing play.mjs against an
// ffmpeg-made HLS directory: node serve-dir.mjs <dir> [port]. Prints the port.
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';

const root = resolve(process.argv[2] || '.');
const port = Number(process.argv[3] || 0);
const TYPES = {
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.mp4': 'video/mp4',
  '.m4s': 'video/iso.segment',
  '.ts': 'video/mp2t',
  '.aac': 'audio/aac',
};

const server = http.createServer(async (req, res) => {
  const cors = { 'access-control-allow-origin': '*', 'cache-control': 'no-store' };
  const path = normalize(join(root, decodeURIComponent(new URL(req.url, 'http://x').pathname)));
  if (path !== root && !path.startsWith(root + sep)) {
    res.writeHead(403, cors).end();
    return;
  }
  try {
    const body = await readFile(path);
    res.writeHead(200, { ...cors, 'content-type': TYPES[extname(path)] || 'application/octet-stream' }).end(body);
  } catch {
    res.writeHead(404, cors).end();
  }
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
