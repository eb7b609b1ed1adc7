//! Planning: every operator's parallelism and max parallelism resolved, the graph validated,
//! operators grouped into chains (an operator joins its predecessor's task when it has a single
//! input, the edge is forward, the parallelisms are equal and chaining is enabled), stable uids.

use super::*;

/// Resolved facts about the graph.
pub(super) struct Plan {
    pub(super) parallelism: Vec<usize>,
    pub(super) max_parallelism: Vec<usize>,
    pub(super) uids: Vec<String>,
    /// Node is chained into its single input's task.
    pub(super) chained: Vec<bool>,
    /// Consumers of each node: (consumer, index of the edge in the consumer's inputs).
    pub(super) consumers: Vec<Vec<(usize, usize)>>,
}

pub(super) fn pointwise(kind: PartitionKind, from_p: usize, to_p: usize) -> bool {
    match kind {
        PartitionKind::Forward => true,
        PartitionKind::Default => from_p == to_p,
        _ => false,
    }
}

pub(super) fn plan(g: &Graph) -> std::result::Result<Plan, ValidationError> {
    if let Some(e) = g.errors.first() {
        return Err(e.clone());
    }
    if g.nodes.is_empty() {
        return Err(ValidationError::EmptyJob);
    }
    let cfg = &g.config;
    let mut parallelism = Vec::new();
    let mut max_parallelism = Vec::new();
    let mut uids: Vec<String> = Vec::new();
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if n.name.is_empty() {
            return Err(ValidationError::Empty {
                operator: format!("#{i}"),
                what: "name",
            });
        }
        let p = match (n.non_parallel, n.parallelism) {
            (true, Some(p)) if p > 1 => {
                return Err(ValidationError::NonParallelOperator {
                    operator: n.name.clone(),
                    parallelism: p,
                })
            }
            (true, _) => 1,
            (false, Some(p)) => p,
            (false, None) => cfg.default_parallelism,
        };
        if p == 0 {
            return Err(ValidationError::ZeroParallelism {
                operator: n.name.clone(),
            });
        }
        let max_p = n.max_parallelism.unwrap_or(cfg.max_parallelism);
        if max_p == 0 || max_p > weir_state::UPPER_BOUND_MAX_PARALLELISM {
            return Err(ValidationError::MaxParallelismOutOfRange {
                operator: n.name.clone(),
                max_parallelism: max_p,
            });
        }
        if max_p < p {
            return Err(ValidationError::MaxParallelismTooSmall {
                operator: n.name.clone(),
                parallelism: p,
                max_parallelism: max_p,
            });
        }
        match &n.uid {
            Some(u) if u.is_empty() => {
                return Err(ValidationError::Empty {
                    operator: n.name.clone(),
                    what: "uid",
                })
            }
            Some(u) => {
                if let Some(first) = seen.insert(u, &n.name) {
                    return Err(ValidationError::DuplicateUid {
                        uid: u.clone(),
                        first: first.to_string(),
                        second: n.name.clone(),
                    });
                }
                uids.push(u.clone());
            }
            None => uids.push(format!("auto-{i}-{}", n.name)),
        }
        parallelism.push(p);
        max_parallelism.push(max_p);
    }
    let mut consumers = vec![Vec::new(); g.nodes.len()];
    let mut chained = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for (e_idx, e) in n.inputs.iter().enumerate() {
            let (fp, tp) = (parallelism[e.from], parallelism[i]);
            if e.kind == PartitionKind::Forward && fp != tp {
                return Err(ValidationError::ForwardParallelismMismatch {
                    from: g.nodes[e.from].name.clone(),
                    from_parallelism: fp,
                    to: n.name.clone(),
                    to_parallelism: tp,
                });
            }
            consumers[e.from].push((i, e_idx));
        }
        chained[i] = cfg.operator_chaining
            && n.chainable
            && n.inputs.len() == 1
            && pointwise(
                n.inputs[0].kind,
                parallelism[n.inputs[0].from],
                parallelism[i],
            );
    }
    Ok(Plan {
        parallelism,
        max_parallelism,
        uids,
        chained,
        consumers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, Operator, Source, SourceContext, SourceStatus, StreamEnv, UserError};

    struct Nothing;
    impl Source for Nothing {
        type Out = u64;
        fn poll_next(&mut self, _: &mut SourceContext<'_, u64>) -> Result<SourceStatus, UserError> {
            Ok(SourceStatus::Finished)
        }
    }

    struct Pass;
    impl Operator for Pass {
        type In = u64;
        type Out = u64;
        fn process_element(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
            ctx.emit(x);
            Ok(())
        }
    }

    fn planned(env: &StreamEnv) -> std::result::Result<Plan, ValidationError> {
        plan(&env.graph.borrow())
    }

    #[test]
    fn forward_edges_of_equal_parallelism_chain_and_others_do_not() {
        let env = StreamEnv::new();
        env.set_parallelism(2);
        let a = env
            .add_source("numbers", |_| Nothing)
            .transform("a", |_| Pass)
            .transform("b", |_| Pass);
        a.rebalance()
            .transform("after rebalance", |_| Pass)
            .transform("wider", |_| Pass)
            .set_parallelism(3)
            .transform("unchained", |_| Pass)
            .set_parallelism(3)
            .disable_chaining();
        let p = planned(&env).unwrap();
        // numbers, a, b, after rebalance, wider, unchained
        assert_eq!(p.chained, vec![false, true, true, false, false, false]);
        assert_eq!(p.parallelism, vec![2, 2, 2, 2, 3, 3]);
        assert_eq!(p.max_parallelism, vec![128; 6]);
        let uids: std::collections::BTreeSet<&String> = p.uids.iter().collect();
        assert_eq!(uids.len(), 6, "uids are unique: {:?}", p.uids);
        // Consumers: each node feeds the next, through edge 0.
        assert_eq!(p.consumers[0], vec![(1, 0)]);
        assert!(p.consumers[5].is_empty());
    }

    #[test]
    fn invalid_graphs_are_refused_with_what_is_wrong() {
        let env = StreamEnv::new();
        env.add_source("numbers", |_| Nothing)
            .set_parallelism(2)
            .forward()
            .transform("narrow", |_| Pass)
            .set_parallelism(1);
        let e = planned(&env).err().expect("forward between 2 and 1");
        assert!(
            matches!(e, ValidationError::ForwardParallelismMismatch { .. }),
            "{e}"
        );

        let env = StreamEnv::new();
        env.add_source("numbers", |_| Nothing)
            .transform("keyed", |_| Pass)
            .set_parallelism(4)
            .set_max_parallelism(2);
        let e = planned(&env)
            .err()
            .expect("max parallelism below parallelism");
        assert!(
            matches!(e, ValidationError::MaxParallelismTooSmall { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("'keyed'"), "{e}");

        let env = StreamEnv::new();
        assert!(matches!(planned(&env), Err(ValidationError::EmptyJob)));
    }
}
