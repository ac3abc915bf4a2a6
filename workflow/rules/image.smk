# Container images: one per variant, built offline from its Bento (Debian base from
# debootstrap, wheels from the lock, `docker build --network none`), tagged as the K3s overlays
# expect. The docker target's runs deploy them (common.smk: container_inputs); the K3s target
# builds the same image itself. Logic: src/servebench/deploy/images.py (by hand: `servebench
# image build --variant NAME`). Output: results/images/<variant>.json (image, id, size, build
# seconds); the base image and the wheelhouse are shared by every variant (results/images/base.json,
# results/wheelhouse/). Needs a Docker daemon (containers/dockerd.sh starts one, as root).


rule image:
    input:
        bento=str(LAYOUT.bento_record("{variant}")),
        # What the image is made of besides the Bento: rebuild when they change.
        dockerfile="containers/Dockerfile.bento.template",
        lock="envs/requirements.lock",
    output:
        str(LAYOUT.image_record("{variant}")),
    log:
        results("logs", "images", "{variant}.log"),
    benchmark:
        results("benchmarks", "images", "{variant}.tsv")
    # Upstream of the docker target's calibrations and runs: built before any load test
    # starts (as the Bentos are), so the runs go in their ABBA order (loadtest's priorities
    # are below 100; Snakemake does not pass a job's priority on to the jobs it needs).
    priority: 100
    # An image build is heavy (pip, layers, compression): nothing runs beside it.
    threads: workflow.cores
    params:
        repository=config["deploy"]["k3s"]["image_repository"],
        registry=config["deploy"]["k3s"]["image_registry"],
    script:
        "../scripts/build_image.py"


# Every variant's image: `snakemake --cores 2 images`.
rule images:
    default_target: False
    input:
        [str(LAYOUT.image_record(name)) for name in config["experiment"]["variants"]],
