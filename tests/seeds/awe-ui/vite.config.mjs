// Builds awe_queue's developer tool from the seed's own files: its four components
// (frontend/src/components/*.vue) and its endpoints (frontend/config/prod.env.js), with the
// seed's host replaced by the sluice under test ($AWE_BASE). Only main.js and index.html are
// ours: the seed sources hold no App.vue, router or build config.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue2";

const here = path.dirname(fileURLToPath(import.meta.url));
const seed = path.join(process.env.SLUICE_SEED_SOURCES, "004-awe_queue", "frontend");
const base = process.env.AWE_BASE;
if (!base) throw new Error("AWE_BASE (the sluice URL) is required");
const prod = createRequire(import.meta.url)(path.join(seed, "config", "prod.env.js"));
const define = {};
for (const [k, v] of Object.entries(prod)) {
  define[`process.env.${k}`] = v.replace("http://192.168.251.88:3000", base);
}

export default defineConfig({
  root: here,
  logLevel: "warn",
  plugins: [vue()],
  define,
  resolve: {
    alias: {
      "@seed": seed,
      vue: path.join(here, "node_modules", "vue", "dist", "vue.runtime.esm.js"),
      "vue-resource": path.join(here, "node_modules", "vue-resource", "dist", "vue-resource.esm.js"),
    },
  },
  build: { outDir: process.env.AWE_OUT || path.join(here, "dist"), emptyOutDir: true, minify: false },
});
