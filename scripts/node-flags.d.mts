/** The node options `npm run topology` starts a topology with (package.json's "topology" script, expanded). */
export function topologyNodeFlags(env?: NodeJS.ProcessEnv): string[];
