/** Whether dist/ is built and no source under pipeline/ or topologies/ (nor package.json, the tsconfigs) is newer. */
export function compiledIsCurrent(root: string): boolean;
