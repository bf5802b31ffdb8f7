# Label a genome with a fine-tuned dnalm classifier, split into shards that run as separate jobs
# (locally, on Slurm or in the cloud: whatever executor Snakemake is given), then merged into
# what one `dnalm label` run over the whole genome writes, byte for byte.
#
#   snakemake -s workflows/label_genome.smk --cores 8 --config \
#       model=runs/ft genome=genome.fa.gz outdir=labels_run shards=8 \
#       extra="--stride 100 --min-score 0.7"
#
# config:
#   model    a fine-tuned classifier (`dnalm finetune -o DIR`)
#   genome   the FASTA to label (plain or gzip)
#   outdir   where shards/ and the merged labels/ go
#   shards   how many jobs (default 4)
#   extra    further `dnalm label` options, the same for every shard (default none)
#   dnalm    the dnalm executable (default `dnalm` on PATH)
#   threads  threads per shard job (default 2)
#
# Output: OUTDIR/labels/{predicted.bed,pairs.csv,task.json}, as `dnalm label -o OUTDIR/labels`
# writes them; OUTDIR/shards/I/labels are the shards (each with its shard.json manifest).

DNALM = config.get("dnalm", "dnalm")
SHARDS = int(config.get("shards", 4))
OUTDIR = config["outdir"]
EXTRA = config.get("extra", "")
THREADS = int(config.get("threads", 2))

if SHARDS < 1:
    raise ValueError(f"config shards={SHARDS}: need at least 1")


rule all:
    input:
        f"{OUTDIR}/labels",


rule label_shard:
    input:
        model=config["model"],
        genome=config["genome"],
    output:
        directory(f"{OUTDIR}/shards/{{shard}}/labels"),
    threads: THREADS
    log:
        f"{OUTDIR}/logs/label_{{shard}}.log",
    shell:
        "RAYON_NUM_THREADS={threads} {DNALM} label -m {input.model} {input.genome}"
        " --shard {wildcards.shard}/{SHARDS} {EXTRA} -o {output} 2> {log}"


rule merge:
    input:
        expand(f"{OUTDIR}/shards/{{shard}}/labels", shard=range(1, SHARDS + 1)),
    output:
        directory(f"{OUTDIR}/labels"),
    log:
        f"{OUTDIR}/logs/merge.log",
    shell:
        "{DNALM} merge {input} -o {output} 2> {log}"
