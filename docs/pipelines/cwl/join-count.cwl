#!/usr/bin/env cwl-runner
# A small CWL Workflow for the cwl-demo pipeline: joins the staged input files and counts their lines.
cwlVersion: v1.2
class: Workflow
inputs:
  files: File[]
  label: string
outputs:
  joined: {type: File, outputSource: join/out}
  count: {type: File, outputSource: count/out}
steps:
  join:
    run:
      class: CommandLineTool
      baseCommand: cat
      inputs:
        files: {type: 'File[]', inputBinding: {position: 1}}
      stdout: joined.txt
      outputs:
        out: {type: stdout}
    in: {files: files}
    out: [out]
  count:
    run:
      class: CommandLineTool
      baseCommand: [wc, -l]
      inputs:
        file: {type: File, inputBinding: {position: 1}}
        label: string
      stdout: $(inputs.label).count
      outputs:
        out: {type: stdout}
    in: {file: join/out, label: label}
    out: [out]
