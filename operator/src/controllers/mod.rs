//! One module per kind.

pub mod aggregator_placement;
pub mod federated_job;
pub mod member_cluster;
pub mod participant_pool;

use fedsky_crds::ParticipantPool;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

/// The objects in `store`, in `pool`'s namespace, that `refers` says use the pool (given
/// its name): the mapper of a controller that watches ParticipantPools.
pub(crate) fn users_of_pool<K>(
    store: &Store<K>,
    pool: &ParticipantPool,
    refers: impl Fn(&K, &str) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let ns = pool.namespace();
    let name = pool.name_any();
    store
        .state()
        .into_iter()
        .filter(|o| o.namespace() == ns && refers(o, &name))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}
